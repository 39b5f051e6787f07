use super::*;

/// Just the tokens-issued family, encoded.
fn scrape(issued: &Arc<IssuedTokens>) -> String {
    #[derive(Debug)]
    struct Only(Arc<IssuedTokens>);
    impl Collector for Only {
        fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
            self.0.encode(&mut encoder)
        }
    }
    let mut registry = Registry::with_prefix("regauth");
    registry.register_collector(Box::new(Only(Arc::clone(issued))));
    let mut text = String::new();
    prometheus_client::encoding::prometheus_text::encode(&mut text, &registry).unwrap();
    text
}

fn line(service: &str, grant: &str, value: u64) -> String {
    format!("regauth_tokens_issued_total{{service=\"{service}\",grant_type=\"{grant}\"}} {value}\n")
}

#[test]
fn without_configured_services_names_past_the_cap_and_long_names_count_as_other() {
    let issued = Arc::new(IssuedTokens::new(&[]));
    for i in 0..MAX_SERVICE_LABELS {
        issued.count(&format!("svc{i}"), Grant::Anonymous);
    }
    issued.count("svc0", Grant::Password);
    issued.count("one-too-many", Grant::Anonymous);
    issued.count("one-too-many", Grant::Anonymous);
    let text = scrape(&issued);
    assert!(text.contains(&line("svc0", "anonymous", 1)), "{text}");
    assert!(text.contains(&line("svc0", "password", 1)), "{text}");
    assert!(
        text.contains(&line(OTHER_SERVICE, "anonymous", 2)),
        "{text}"
    );
    assert!(!text.contains("one-too-many"), "{text}");
    // Each service has one series per grant type, plus `other`.
    let series = text.lines().filter(|l| !l.starts_with('#')).count();
    assert_eq!(series, (MAX_SERVICE_LABELS + 1) * Grant::ALL.len());

    let fresh = Arc::new(IssuedTokens::new(&[]));
    fresh.count(&"x".repeat(MAX_SERVICE_LABEL_BYTES + 1), Grant::Basic);
    assert!(scrape(&fresh).contains(&line(OTHER_SERVICE, "basic", 1)));
}

#[test]
fn configured_services_are_listed_from_the_start_and_no_other_name_gets_a_series() {
    let issued = Arc::new(IssuedTokens::new(&[
        "registry.a".into(),
        "registry.b".into(),
    ]));
    issued.count("registry.b", Grant::RefreshToken);
    issued.count("registry.c", Grant::Basic);
    let text = scrape(&issued);
    assert!(text.contains(&line("registry.a", "anonymous", 0)), "{text}");
    assert!(
        text.contains(&line("registry.b", "refresh_token", 1)),
        "{text}"
    );
    assert!(text.contains(&line(OTHER_SERVICE, "basic", 1)), "{text}");
    assert!(!text.contains("registry.c"), "{text}");
}

#[test]
fn label_values_with_quotes_and_newlines_are_escaped() {
    let issued = Arc::new(IssuedTokens::new(&[]));
    issued.count("a\"b\nc\\d", Grant::Anonymous);
    let text = scrape(&issued);
    assert!(
        text.contains(r#"service="a\"b\nc\\d""#),
        "label value not escaped: {text}"
    );
}
