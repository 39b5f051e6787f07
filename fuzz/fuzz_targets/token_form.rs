//! Fuzzes the `POST /token` form: `serde_html_form::from_bytes::<TokenForm>`, exactly as the
//! handler reads the request body. Properties: nothing panics, and a parsed form's `Debug` is
//! the same whatever its password and refresh token hold.

#![no_main]

use libfuzzer_sys::fuzz_target;
use regauth::http::TokenForm;
use secrecy::SecretString;

fuzz_target!(|data: &[u8]| {
    if let Ok(mut form) = serde_html_form::from_bytes::<TokenForm>(data) {
        let shown = format!("{form:?}");
        let blank = || SecretString::from(String::new());
        form.password = form.password.map(|_| blank());
        form.refresh_token = form.refresh_token.map(|_| blank());
        assert_eq!(shown, format!("{form:?}"), "Debug shows a secret");
    }
});
