//! Reading the token endpoint's answer (RFC 6749 sections 5.1 and 5.2).
//!
//! This file owns what counts as a usable token response, how a refusal is
//! read, and how server text is made safe for an error message (one line,
//! short, anything token-like masked). It never sees the request; building
//! and sending it is `token.rs`'s and `http.rs`'s business.

use std::fmt;

use serde_json::Map;
use serde_json::Value;

use crate::config::one_line;
use crate::config::redacted_url;
use crate::config::TokenUrl;
use crate::secret::AccessToken;
use crate::secret::RefreshToken;
use crate::secret::REDACTED;
use crate::token::HttpResponse;
use crate::token::TokenError;

/// The largest `expires_in` accepted, in seconds (about 136 years); anything
/// larger is not a lifetime but a server bug, and would overflow clocks.
pub const MAX_EXPIRES_IN: u64 = u32::MAX as u64;

/// How many characters of a server's `error_description` a message keeps.
const MAX_DESCRIPTION: usize = 200;

/// How many characters of an unusable body a message shows.
const MAX_EXCERPT: usize = 100;

/// A successful token response (RFC 6749 section 5.1).
#[derive(Clone)]
pub struct TokenResponse {
    /// The access token, never empty.
    pub access_token: AccessToken,
    /// The token type as the server sent it, `Bearer` when it sent none.
    pub token_type: String,
    /// The lifetime in seconds, if the server said; without it the cache
    /// assumes [`crate::cache::DEFAULT_LIFETIME`].
    pub expires_in: Option<u64>,
    /// The refresh token, if the server issued one.
    pub refresh_token: Option<RefreshToken>,
}

impl fmt::Debug for TokenResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenResponse")
            .field("access_token", &self.access_token)
            .field("token_type", &self.token_type)
            .field("expires_in", &self.expires_in)
            .field("refresh_token", &self.refresh_token)
            .finish()
    }
}

/// Reads the token endpoint's answer (RFC 6749 sections 5.1 and 5.2).
///
/// Never panics, whatever the bytes; unknown members are ignored.
pub fn parse_response(
    url: &TokenUrl,
    response: &HttpResponse,
) -> Result<TokenResponse, TokenError> {
    let status = response.status;
    if (300..400).contains(&status) {
        return Err(TokenError::Redirected {
            url: url.redacted(),
            status,
            location: redirect_target(url, response.header("location")),
        });
    }

    // The content type is not trusted: servers label JSON text/plain or
    // text/javascript, or send none. A form-encoded body is what GitHub
    // answers to a client that does not ask for JSON.
    let object = match serde_json::from_slice::<Value>(&response.body) {
        Ok(Value::Object(object)) => Some(object),
        _ => form_object(response),
    };
    let invalid = |problem: &str| invalid_response(url, response, object.as_ref(), problem);
    if matches!(status, 429 | 503) {
        return Err(unavailable(url, response, object.as_ref()));
    }
    match &object {
        // A 200 with an `error` member is a refusal too: some servers do that.
        Some(object) if object.contains_key("error") => Err(refused(url, status, object)),
        Some(object) if (200..300).contains(&status) => {
            token_response(url, object).map_err(|problem| invalid(&problem))
        }
        // RFC 6749 section 5.2: a failed client authentication may be a bare
        // 401 with `WWW-Authenticate`; that is invalid_client.
        _ if status == 401 => Err(TokenError::Refused {
            url: url.redacted(),
            status,
            error: Some("invalid_client".to_owned()),
            description: Some(match response.header("www-authenticate") {
                Some(challenge) => format!(
                    "no error body; WWW-Authenticate: {}",
                    mask_token_like(&one_line(challenge.trim(), 100))
                ),
                None => "no error body".to_owned(),
            }),
        }),
        _ if status == 403 => Err(TokenError::Refused {
            url: url.redacted(),
            status,
            error: None,
            description: None,
        }),
        // Too large for the server: the request's only large part is a
        // long client secret, in the header or the body.
        _ if status == 431 => Err(invalid(
            "the server refused the request's headers as too large; with clientAuthentication \
             header a long Rest Password travels in the Authorization header",
        )),
        _ if status == 413 => Err(invalid(
            "the server refused the request as too large; with clientAuthentication body a \
             long Rest Password travels in the body",
        )),
        Some(_) => Err(invalid("error response without an error member")),
        None => Err(invalid("body is not a JSON object")),
    }
}

/// A form-encoded body (`access_token=...&token_type=bearer`) as the members
/// of a JSON object, when it is one: labelled as a form, or unlabelled or
/// text/plain and holding `access_token` or `error`.
fn form_object(response: &HttpResponse) -> Option<Map<String, Value>> {
    let media_type = response
        .header("content-type")
        .and_then(|value| value.split(';').next())
        .map(|value| value.trim().to_ascii_lowercase());
    let labelled_form = media_type.as_deref() == Some(crate::token::FORM_CONTENT_TYPE);
    let may_be_form = labelled_form || matches!(media_type.as_deref(), None | Some("text/plain"));
    let body = std::str::from_utf8(&response.body).ok()?.trim();
    let form_alphabet = |c: char| c.is_ascii_graphic() && !"<>{}\"".contains(c);
    if !may_be_form || body.is_empty() || !body.chars().all(form_alphabet) {
        return None;
    }
    let mut object = Map::new();
    for (name, value) in form_urlencoded::parse(body.as_bytes()) {
        object
            .entry(name.into_owned())
            .or_insert(Value::String(value.into_owned()));
    }
    let known = object.contains_key("access_token") || object.contains_key("error");
    (labelled_form || known).then_some(object)
}

/// A 429 or 503: the server asks to come back later.
fn unavailable(
    url: &TokenUrl,
    response: &HttpResponse,
    object: Option<&Map<String, Value>>,
) -> TokenError {
    let error = object.and_then(|object| match object.get("error") {
        Some(Value::String(code)) if !code.trim().is_empty() => {
            Some(mask_token_like(&one_line(code.trim(), 64)))
        }
        _ => None,
    });
    TokenError::Unavailable {
        url: url.redacted(),
        status: response.status,
        error,
        retry_after: crate::token::retry_after(response, std::time::SystemTime::now()),
    }
}

/// The members of a success response; the error text is the problem.
///
/// The result is checked as a whole: a token with an unreadable lifetime is
/// refused rather than written with a wrong expiry.
fn token_response(url: &TokenUrl, object: &Map<String, Value>) -> Result<TokenResponse, String> {
    let access_token = match object.get("access_token") {
        Some(Value::String(token)) if !token.is_empty() => AccessToken::new(token.clone()),
        Some(Value::String(_)) => return Err("access_token is empty".to_owned()),
        None | Some(Value::Null) => return Err("no access_token".to_owned()),
        Some(_) => return Err("access_token is not a string".to_owned()),
    };
    let token_type = match object.get("token_type") {
        None | Some(Value::Null) => {
            log::warn!(
                "token response from {} has no token_type; taking it as Bearer",
                url.redacted()
            );
            "Bearer".to_owned()
        }
        Some(Value::String(kind)) => kind.clone(),
        Some(_) => return Err("token_type is not a string".to_owned()),
    };
    let expires_in = match object.get("expires_in") {
        None | Some(Value::Null) => None,
        Some(value) => Some(expires_in(value)?),
    };
    let refresh_token = match object.get("refresh_token") {
        None | Some(Value::Null) => None,
        Some(Value::String(token)) if token.is_empty() => None,
        Some(Value::String(token)) => Some(RefreshToken::new(token.clone())),
        Some(_) => return Err("refresh_token is not a string".to_owned()),
    };
    Ok(TokenResponse {
        access_token,
        token_type,
        expires_in,
        refresh_token,
    })
}

/// `expires_in` as a number of seconds; some servers send it as a string.
fn expires_in(value: &Value) -> Result<u64, String> {
    let seconds = match value {
        Value::Number(number) => number.as_u64().or_else(|| {
            // Fractional seconds are rounded down, on the side of expiring early.
            number
                .as_f64()
                .filter(|s| s.is_finite() && *s >= 0.0)
                .map(|s| s as u64)
        }),
        Value::String(text) => text.trim().parse::<u64>().ok(),
        _ => None,
    };
    match seconds {
        Some(seconds) if seconds <= MAX_EXPIRES_IN => Ok(seconds),
        Some(_) => Err("expires_in is out of range".to_owned()),
        None => Err("expires_in is not a number of seconds".to_owned()),
    }
}

/// Checks that the token type is Bearer (compared case-insensitively, RFC
/// 6749 section 5.1).
pub fn check_bearer(url: &TokenUrl, response: TokenResponse) -> Result<TokenResponse, TokenError> {
    check_token_type(url, response, &["Bearer".to_owned()])
}

/// Checks the token type against `allowed` (compared case-insensitively,
/// RFC 6749 section 5.1): a client must not use a token whose type it does
/// not understand (section 7.1).
pub fn check_token_type(
    url: &TokenUrl,
    response: TokenResponse,
    allowed: &[String],
) -> Result<TokenResponse, TokenError> {
    if allowed
        .iter()
        .any(|name| response.token_type.eq_ignore_ascii_case(name))
    {
        return Ok(response);
    }
    Err(TokenError::UnsupportedTokenType {
        url: url.redacted(),
        token_type: mask_token_like(&one_line(&response.token_type, 40)),
        allowed: allowed.join(", "),
    })
}

fn refused(url: &TokenUrl, status: u16, object: &Map<String, Value>) -> TokenError {
    let text = |key: &str, max: usize| match object.get(key) {
        Some(Value::String(text)) if !text.trim().is_empty() => {
            Some(mask_token_like(&one_line(text.trim(), max)))
        }
        _ => None,
    };
    TokenError::Refused {
        url: url.redacted(),
        status,
        error: text("error", 64),
        description: text("error_description", MAX_DESCRIPTION),
    }
}

fn invalid_response(
    url: &TokenUrl,
    response: &HttpResponse,
    object: Option<&Map<String, Value>>,
    problem: &str,
) -> TokenError {
    let content_type = response
        .header("content-type")
        .map_or("none".to_owned(), |value| one_line(value, 80));
    TokenError::InvalidResponse {
        url: url.redacted(),
        status: response.status,
        content_type,
        problem: problem.to_owned(),
        body: excerpt(&response.body, object),
    }
}

/// The start of a body for an error message, with token members and
/// anything token-like masked.
fn excerpt(body: &[u8], object: Option<&Map<String, Value>>) -> String {
    if body.iter().all(u8::is_ascii_whitespace) {
        return "empty body".to_owned();
    }
    let text = match object {
        Some(object) => {
            let mut shown = object.clone();
            for key in ["access_token", "refresh_token", "id_token", "client_secret"] {
                if let Some(value) = shown.get_mut(key) {
                    *value = Value::String(REDACTED.to_owned());
                }
            }
            Value::Object(shown).to_string()
        }
        // Masking runs before cutting, so that a cut token is masked whole.
        None => String::from_utf8_lossy(&body[..body.len().min(4 * MAX_EXCERPT)]).into_owned(),
    };
    format!(
        "body starts with '{}'",
        one_line(
            &mask_token_like(&one_line(&text, 4 * MAX_EXCERPT)),
            MAX_EXCERPT
        )
    )
}

/// Replaces runs that look like tokens or keys (16 or more characters of a
/// token alphabet, with both letters and digits) by `[redacted]`.
pub(crate) fn mask_token_like(text: &str) -> String {
    let is_token_char = |c: char| c.is_ascii_alphanumeric() || "-._~+/=".contains(c);
    let mut shown = String::with_capacity(text.len());
    let mut run = String::new();
    let flush = |run: &mut String, shown: &mut String| {
        let looks_like_token = run.len() >= 16
            && run.chars().any(|c| c.is_ascii_digit())
            && run.chars().any(|c| c.is_ascii_alphabetic());
        shown.push_str(if looks_like_token { REDACTED } else { run });
        run.clear();
    };
    for c in text.chars() {
        if is_token_char(c) {
            run.push(c);
        } else {
            flush(&mut run, &mut shown);
            shown.push(c);
        }
    }
    flush(&mut run, &mut shown);
    shown
}

fn redirect_target(url: &TokenUrl, location: Option<&str>) -> String {
    match location.map(|location| url.url().join(location.trim())) {
        Some(Ok(target)) => one_line(&redacted_url(&target), 200),
        Some(Err(_)) => "an unreadable Location".to_owned(),
        None => "nowhere (no Location header)".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use posthandler_abi::ErrorKind;
    use proptest::prelude::*;

    use crate::token::tests::token_url;

    fn parse(status: u16, body: &str) -> Result<TokenResponse, TokenError> {
        let url = token_url("http://127.0.0.1:4000/token");
        let response = HttpResponse {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: body.as_bytes().to_vec(),
        };
        parse_response(&url, &response).and_then(|token| check_bearer(&url, token))
    }

    #[test]
    fn parses_a_plain_success() {
        let token = parse(
            200,
            r#"{"access_token":"at","token_type":"Bearer","expires_in":3600,"refresh_token":"rt",
                "scope":"products.write","unknown":{"nested":true}}"#,
        )
        .unwrap();
        assert_eq!(token.access_token.secret(), "at");
        assert_eq!(token.expires_in, Some(3600));
        assert_eq!(
            token.refresh_token.as_ref().map(RefreshToken::secret),
            Some("rt")
        );
    }

    #[test]
    fn expires_in_may_be_a_string_or_missing() {
        let token = parse(
            200,
            r#"{"access_token":"at","token_type":"bearer","expires_in":"300"}"#,
        );
        assert_eq!(token.unwrap().expires_in, Some(300));
        let token = parse(
            200,
            r#"{"access_token":"at","token_type":"bearer","expires_in":null}"#,
        );
        assert_eq!(token.unwrap().expires_in, None);
        let token = parse(200, r#"{"access_token":"at","token_type":"bearer"}"#).unwrap();
        assert_eq!(token.expires_in, None);
        assert!(token.refresh_token.is_none());
    }

    #[test]
    fn token_type_is_case_insensitive_and_defaults_to_bearer() {
        assert!(parse(200, r#"{"access_token":"at","token_type":"BEARER"}"#).is_ok());
        let token = parse(200, r#"{"access_token":"at"}"#).unwrap();
        assert_eq!(token.token_type, "Bearer");
    }

    #[test]
    fn other_token_types_are_refused_by_name() {
        let error = parse(200, r#"{"access_token":"at","token_type":"mac"}"#).unwrap_err();
        assert_eq!(
            error.to_string(),
            "token request to http://127.0.0.1:4000/token: token type 'mac' is not supported \
             (allowed: Bearer; see allowedTokenTypes)"
        );
        assert_eq!(error.kind(), ErrorKind::InvalidResponse);
    }

    #[test]
    fn an_error_response_carries_code_description_and_status() {
        let error = parse(
            401,
            r#"{"error":"invalid_client","error_description":"client authentication failed"}"#,
        )
        .unwrap_err();
        assert_eq!(
            error.to_string(),
            "token request to http://127.0.0.1:4000/token refused: invalid_client (client \
             authentication failed), HTTP 401"
        );
        assert_eq!(error.kind(), ErrorKind::Authorization);
    }

    #[test]
    fn a_200_with_an_error_member_is_a_refusal() {
        let error = parse(200, r#"{"error":"invalid_scope"}"#).unwrap_err();
        assert_eq!(
            error.to_string(),
            "token request to http://127.0.0.1:4000/token refused: invalid_scope, HTTP 200"
        );
        assert_eq!(error.kind(), ErrorKind::Authorization);
    }

    #[test]
    fn refusal_kinds_follow_code_and_status() {
        let kind = |status, body| parse(status, body).unwrap_err().kind();
        assert_eq!(
            kind(400, r#"{"error":"invalid_grant"}"#),
            ErrorKind::Authorization
        );
        assert_eq!(
            kind(400, r#"{"error":"invalid_request"}"#),
            ErrorKind::Authorization
        );
        assert_eq!(
            kind(503, r#"{"error":"temporarily_unavailable"}"#),
            ErrorKind::Transport
        );
        assert_eq!(
            kind(500, r#"{"error":"invalid_client"}"#),
            ErrorKind::Authorization
        );
        assert_eq!(kind(403, "<html>no</html>"), ErrorKind::Authorization);
        assert_eq!(
            kind(502, "<html>bad gateway</html>"),
            ErrorKind::InvalidResponse
        );
    }

    #[test]
    fn server_text_is_sanitised_to_one_short_line() {
        let long = "x".repeat(500);
        let body = format!(
            r#"{{"error":"invalid_client","error_description":"line one\nline two {long}"}}"#
        );
        let message = parse(400, &body).unwrap_err().to_string();
        assert!(!message.contains('\n'));
        assert!(message.contains("line one line two xxx"));
        assert!(message.len() < 400, "{message}");
    }

    #[test]
    fn empty_access_token_is_unusable() {
        let error = parse(200, r#"{"access_token":"","token_type":"Bearer"}"#).unwrap_err();
        assert_eq!(
            error.to_string(),
            "token request to http://127.0.0.1:4000/token: unusable response (HTTP 200, content \
             type application/json): access_token is empty; body starts with \
             '{\"access_token\":\"[redacted]\",\"token_type\":\"Bearer\"}'"
        );
        assert_eq!(error.kind(), ErrorKind::InvalidResponse);
    }

    #[test]
    fn an_html_body_is_unusable_and_shown_masked() {
        let url = token_url("http://127.0.0.1:4000/token");
        let response = HttpResponse {
            status: 200,
            headers: vec![("Content-Type".into(), "text/html".into())],
            body: b"<html>token eyJhbGciOiJIUzI1NiJ9.abc123def456 here</html>".to_vec(),
        };
        let error = parse_response(&url, &response).unwrap_err();
        assert_eq!(
            error.to_string(),
            "token request to http://127.0.0.1:4000/token: unusable response (HTTP 200, content \
             type text/html): body is not a JSON object; body starts with '<html>token \
             [redacted] here</html>'"
        );
        assert_eq!(error.kind(), ErrorKind::InvalidResponse);
    }

    #[test]
    fn a_bad_expires_in_hides_the_token_it_came_with() {
        let error = parse(200, r#"{"access_token":"short","expires_in":"soon"}"#).unwrap_err();
        let message = error.to_string();
        assert!(
            message.contains("expires_in is not a number of seconds"),
            "{message}"
        );
        assert!(!message.contains("short"), "{message}");
    }

    #[test]
    fn an_empty_error_body_says_so() {
        let error = parse(500, "").unwrap_err();
        assert_eq!(
            error.to_string(),
            "token request to http://127.0.0.1:4000/token: unusable response (HTTP 500, content \
             type application/json): body is not a JSON object; empty body"
        );
    }

    #[test]
    fn a_request_too_large_for_the_server_says_which_part() {
        let error = parse(431, "").unwrap_err();
        assert_eq!(
            error.to_string(),
            "token request to http://127.0.0.1:4000/token: unusable response (HTTP 431, content \
             type application/json): the server refused the request's headers as too large; with \
             clientAuthentication header a long Rest Password travels in the Authorization \
             header; empty body"
        );
        let error = parse(413, "<h1>Payload Too Large</h1>").unwrap_err();
        assert!(
            error.to_string().contains(
                "the server refused the request as too large; with clientAuthentication body"
            ),
            "{error}"
        );
        // A JSON error answer still wins: it says more.
        let error = parse(413, r#"{"error":"invalid_request"}"#).unwrap_err();
        assert!(matches!(error, TokenError::Refused { .. }), "{error:?}");
    }

    #[test]
    fn a_redirect_names_where_it_pointed() {
        let url = token_url("http://127.0.0.1:4000/token?key=canary");
        let response = HttpResponse {
            status: 302,
            headers: vec![(
                "Location".into(),
                "https://u:p@other.example/login?next=x".into(),
            )],
            body: vec![],
        };
        let error = parse_response(&url, &response).unwrap_err();
        assert_eq!(
            error.to_string(),
            "token request to http://127.0.0.1:4000/token was redirected to \
             https://other.example/login with HTTP 302 (redirects are not followed; set restUrl \
             to the final URL)"
        );
        assert_eq!(error.kind(), ErrorKind::InvalidResponse);
    }

    #[test]
    fn mask_keeps_words_and_hides_tokens() {
        assert_eq!(
            mask_token_like("invalid_client failed"),
            "invalid_client failed"
        );
        assert_eq!(
            mask_token_like("key 0123456789abcdefXYZ."),
            "key [redacted]"
        );
    }

    proptest! {
        #[test]
        fn parser_never_panics(
            status in 100u16..600,
            body in proptest::collection::vec(any::<u8>(), 0..512),
        ) {
            let url = token_url("http://127.0.0.1:4000/token");
            let response = HttpResponse { status, headers: vec![], body };
            let _ = parse_response(&url, &response).and_then(|token| check_bearer(&url, token));
        }

        #[test]
        fn parser_never_panics_on_json_like_bodies(
            status in 100u16..600,
            access in proptest::option::of("\\PC{0,20}"),
            expires in proptest::option::of(prop_oneof![
                any::<i64>().prop_map(|n| n.to_string()),
                any::<f64>().prop_map(|n| format!("{n:?}")),
                "\\PC{0,10}".prop_map(|s| serde_json::Value::String(s).to_string()),
            ]),
        ) {
            let mut body = serde_json::Map::new();
            if let Some(access) = access {
                body.insert("access_token".into(), access.into());
            }
            let mut text = serde_json::Value::Object(body).to_string();
            if let Some(expires) = expires {
                text = format!("{},\"expires_in\":{expires}}}", &text[..text.len() - 1]);
                text = text.replacen("{,", "{", 1);
            }
            let _ = parse(status, &text);
        }
    }
}
