//! The count behind the "token requests per 100,000 records" figure, as a
//! test: over simulated time, the plugin asks exactly as often as the ideal
//! (one request at the start and one each time the token enters its
//! refresh window), counted at the transport.

use std::time::Duration;

use posthandler_bench::simulate;

#[test]
fn ten_minutes_of_five_minute_tokens_take_the_ideal_three_requests() {
    let outcome = simulate(
        100_000,
        Duration::from_secs(600),
        Duration::from_secs(300),
        Duration::from_secs(60),
    );
    // Renewals at 0 s, 240 s and 480 s of the 600 s.
    assert_eq!(outcome.ideal, 3);
    assert_eq!(outcome.requests, outcome.ideal);
}

#[test]
fn a_window_over_half_the_lifetime_renews_at_half_time() {
    let outcome = simulate(
        20_000,
        Duration::from_secs(600),
        Duration::from_secs(300),
        Duration::from_secs(200),
    );
    // The window is capped at 150 s: renewals every 150 s, at 0, 150, 300, 450.
    assert_eq!(outcome.ideal, 4);
    assert_eq!(outcome.requests, outcome.ideal);
}
