//! Fuzzes the token response parser: status, headers and body from the
//! input; it must never panic and never return a token that is empty.
#![no_main]

use libfuzzer_sys::fuzz_target;
use posthandler_oauth2::config::OAuthConfig;
use posthandler_oauth2::response::{check_token_type, parse_response};
use posthandler_oauth2::token::HttpResponse;

const CONTEXT: &str = r#"{"postProcessorPlugins":[{"destinationSystems":[{
    "limitToServertype":"test","restUrl":"http://127.0.0.1:4000/token",
    "restUser":"u","restPassword":"p"}],"destinationFieldForToken":"/t"}]}"#;

const CONTENT_TYPES: [&str; 5] = [
    "application/json",
    "text/plain",
    "application/x-www-form-urlencoded",
    "text/html",
    "text/javascript",
];

fuzz_target!(|data: &[u8]| {
    let config = OAuthConfig::parse(CONTEXT, 0).unwrap();
    let url = &config.systems[0].token_url;
    // First two bytes pick the status and the content type, the rest is the body.
    let (head, body) = data.split_at(data.len().min(2));
    let status = 100 + u16::from(head.first().copied().unwrap_or(100)) * 2;
    let headers = match head.get(1) {
        Some(pick) if (*pick as usize) < CONTENT_TYPES.len() => {
            vec![("Content-Type".to_owned(), CONTENT_TYPES[*pick as usize].to_owned())]
        }
        Some(pick) if *pick > 250 => vec![("Retry-After".to_owned(), "5".to_owned())],
        _ => vec![],
    };
    let response = HttpResponse {
        status,
        headers,
        body: body.to_vec(),
    };
    let allowed = vec!["Bearer".to_owned(), "DPoP".to_owned()];
    if let Ok(token) = parse_response(url, &response).and_then(|t| check_token_type(url, t, &allowed)) {
        assert!(!token.access_token.secret().is_empty());
    }
});
