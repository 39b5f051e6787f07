//! Fuzzes the `POST /token` form: `serde_html_form::from_bytes::<TokenForm>`, exactly as the
//! handler reads the request body. Property: nothing panics, and a parsed form formats.

#![no_main]

use libfuzzer_sys::fuzz_target;
use regauth::http::TokenForm;

fuzz_target!(|data: &[u8]| {
    if let Ok(form) = serde_html_form::from_bytes::<TokenForm>(data) {
        let _ = format!("{form:?}");
    }
});
