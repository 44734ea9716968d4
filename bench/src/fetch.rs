//! The token fetch figure: one client credentials request by the plugin's
//! client and by the `oauth2` crate's ureq 2 client, each on a new
//! connection and on a warm one, against oidc-provider on loopback.
//!
//! The four clients take turns, one request each per round, the order
//! rotating from round to round, and each figure is the median of its own
//! requests' times. Measured one after the other instead (as criterion
//! runs benchmarks), the clients met a server in different states:
//! oidc-provider keeps every token it issues, its heap and garbage
//! collection grow through a run, and whichever client came later paid for
//! that; the ratio of the same two clients moved between 0.6 and 1.8 from
//! run to run. Taking turns, both clients of a ratio see the same server.
//!
//! Each timed request follows an untimed one by the same client. In a
//! rotating order a client always follows the same other one, and a
//! request leaves work behind on the server (a connection to close,
//! garbage to collect). Without the lead-in that work was charged to the
//! neighbour: swapping two clients' places in the list moved the plugin's
//! warm ratio from 1.024 to 1.007 and its new-connection one from 1.025 to
//! 1.042.

use std::hint::black_box;
use std::time::Duration;

use oauth2::basic::BasicClient;
use oauth2::{ClientId, ClientSecret, Scope, TokenResponse, TokenUrl};
use posthandler_oauth2::config::OAuthConfig;
use posthandler_oauth2::http::UreqTransport;
use posthandler_oauth2::token::{Grant, TokenClient};

use crate::{context, take_turns, Oidc, CLIENT_ID, CLIENT_SECRET, SCOPE};

/// The medians of one run, in microseconds.
#[derive(Debug, Clone, Copy)]
pub struct FetchTimes {
    /// The plugin's client, a new one (so a new connection) per request.
    pub plugin_new_us: f64,
    /// The plugin's client, one for all requests (keep-alive).
    pub plugin_warm_us: f64,
    /// `oauth2` with a new ureq 2 agent per request.
    pub oauth2_new_us: f64,
    /// `oauth2` with one ureq 2 agent for all requests.
    pub oauth2_warm_us: f64,
}

/// Runs `rounds` rounds against a token server of its own.
///
/// # Panics
///
/// When a client gets no token.
pub fn token_fetch(rounds: usize) -> FetchTimes {
    let oidc = Oidc::start(Duration::from_secs(3600));
    let context_json = context(&oidc.token_url()).to_string();
    let system = OAuthConfig::parse(&context_json, 0)
        .expect("the context parses")
        .systems[0]
        .clone();
    let plugin_client = || {
        TokenClient::new(
            "bench".into(),
            0,
            system.clone(),
            Box::new(UreqTransport::new()),
        )
    };
    let plugin_fetch = |client: &TokenClient| {
        assert!(
            client.fetch(&Grant::ClientCredentials).is_ok(),
            "the plugin gets a token"
        );
    };
    let oauth2_client = BasicClient::new(ClientId::new(CLIENT_ID.into()))
        .set_client_secret(ClientSecret::new(CLIENT_SECRET.into()))
        .set_token_uri(TokenUrl::new(oidc.token_url()).expect("a token URL"));
    let oauth2_agent = || ureq2::AgentBuilder::new().redirects(0).build();
    let oauth2_fetch = |agent: &ureq2::Agent| {
        let token = oauth2_client
            .exchange_client_credentials()
            .add_scope(Scope::new(SCOPE.into()))
            .request(agent)
            .expect("oauth2 gets a token");
        black_box(token.access_token().secret().len());
    };

    let (warm_plugin, warm_agent) = (plugin_client(), oauth2_agent());
    let clients: [&dyn Fn(); 4] = [
        &|| plugin_fetch(&plugin_client()),
        &|| plugin_fetch(&warm_plugin),
        &|| oauth2_fetch(&oauth2_agent()),
        &|| oauth2_fetch(&warm_agent),
    ];
    // Warm-up: the server's code paths, and the two warm connections.
    for _ in 0..50 {
        clients.iter().for_each(|fetch| fetch());
    }
    let us = take_turns(&clients, rounds, 1, 1);
    FetchTimes {
        plugin_new_us: us[0] / 1e3,
        plugin_warm_us: us[1] / 1e3,
        oauth2_new_us: us[2] / 1e3,
        oauth2_warm_us: us[3] / 1e3,
    }
}
