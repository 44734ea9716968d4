//! Fuzzes the export context parser: any bytes as the context, any entry
//! index; it must never panic, and an error never quotes the password.
#![no_main]

use libfuzzer_sys::fuzz_target;
use posthandler_oauth2::config::OAuthConfig;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for index in 0..2 {
        if let Err(error) = OAuthConfig::parse(text, index) {
            let message = error.to_string();
            assert!(!message.contains('\n'), "one line: {message}");
        }
    }
});
