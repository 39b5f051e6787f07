//! Loading key material: PEM formats, algorithms, HMAC secrets, kids and certificates.

use super::*;
use chrono::Utc;
use data_encoding::{BASE64, BASE64URL_NOPAD};

use crate::keys::algorithm::Algorithm;
use crate::keys::generate;
use crate::keys::kid::KidFormat;

const RSA_PKCS1: &[u8] = include_bytes!("../../../tests/fixtures/rsa2048-pkcs1.pem");
const RSA_1024: &[u8] = include_bytes!("../../../tests/fixtures/rsa1024.pem");
const EC256_SEC1: &[u8] = include_bytes!("../../../tests/fixtures/ec256-sec1.pem");
const EC384_SEC1: &[u8] = include_bytes!("../../../tests/fixtures/ec384-sec1.pem");
const ED25519: &[u8] = include_bytes!("../../../tests/fixtures/ed25519.pem");
const X25519: &[u8] = include_bytes!("../../../tests/fixtures/x25519.pem");
const SECP256K1: &[u8] = include_bytes!("../../../tests/fixtures/secp256k1.pem");
const ENCRYPTED: &[u8] = include_bytes!("../../../tests/fixtures/ec256-encrypted.pem");
const X_ZERO: &str = include_str!("../../../tests/fixtures/ec256-x-leading-zero.pem");
const Y_ZERO: &str = include_str!("../../../tests/fixtures/ec256-y-leading-zero.pem");

fn load(bytes: &[u8], alg: Option<Algorithm>) -> Result<SigningKey, KeyError> {
    SigningKey::from_bytes(
        bytes,
        None,
        KeySpec {
            algorithm: alg,
            kid_format: KidFormat::Libtrust,
            x5c: true,
        },
    )
}

#[test]
fn pem_formats_load_with_their_natural_algorithm() {
    let cases: &[(&[u8], Algorithm)] = &[
        (RSA_PKCS1, Algorithm::RS256),
        (EC256_SEC1, Algorithm::ES256),
        (EC384_SEC1, Algorithm::ES384),
        (ED25519, Algorithm::EdDSA),
    ];
    for (bytes, alg) in cases {
        let key = load(bytes, None).unwrap_or_else(|e| panic!("{alg}: {e}"));
        assert_eq!(key.algorithm(), *alg);
        let kid = key.kid().unwrap();
        assert_eq!(kid.len(), 59, "libtrust kid is 12 groups of 4: {kid}");
        assert_eq!(kid.matches(':').count(), 11);
    }
}

#[test]
fn rsa_keys_take_any_rsa_algorithm_by_configuration() {
    for alg in [
        Algorithm::RS384,
        Algorithm::RS512,
        Algorithm::PS256,
        Algorithm::PS384,
        Algorithm::PS512,
    ] {
        assert_eq!(load(RSA_PKCS1, Some(alg)).unwrap().algorithm(), alg);
    }
}

#[test]
fn unusable_keys_are_refused_with_a_clear_reason() {
    let cases: &[(&[u8], Option<Algorithm>, &str)] = &[
        (RSA_1024, None, "at least 2048 bits"),
        (X25519, None, "not a supported key"),
        (SECP256K1, None, "not a supported key"),
        (ENCRYPTED, None, "encrypted private keys are not supported"),
        (b"", None, "no PEM private key found"),
        (b"garbage", None, "no PEM private key found"),
        (
            b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
            None,
            "not a supported key",
        ),
        (
            b"-----BEGIN PRIVATE KEY-----\n!!\n-----END PRIVATE KEY-----\n",
            None,
            "PEM text is malformed",
        ),
        (
            EC256_SEC1,
            Some(Algorithm::ES384),
            "does not fit an EC P-256 key",
        ),
        (
            EC256_SEC1,
            Some(Algorithm::RS256),
            "does not fit an EC P-256 key",
        ),
        (RSA_PKCS1, Some(Algorithm::ES256), "does not fit an RSA key"),
        (
            ED25519,
            Some(Algorithm::HS256),
            "does not fit an Ed25519 key",
        ),
        (b"c2hvcnQ=", Some(Algorithm::HS256), "at least 32 bytes"),
        (
            b"not base64 at all!",
            Some(Algorithm::HS256),
            "must be base64",
        ),
    ];
    for (bytes, alg, expected) in cases {
        let err = load(bytes, *alg).expect_err(expected).to_string();
        assert!(err.contains(expected), "{expected}: got {err}");
    }
    let two = [EC256_SEC1, ED25519].concat();
    assert_eq!(load(&two, None).unwrap_err(), KeyError::SeveralKeys);
}

#[test]
fn hmac_secrets_need_an_explicit_algorithm_and_never_publish_a_public_key() {
    let secret = generate::generate(Algorithm::HS256).unwrap().key_pem;
    assert_eq!(
        load(secret.as_bytes(), None).unwrap_err(),
        KeyError::NoPrivateKey
    );
    let key = load(secret.as_bytes(), Some(Algorithm::HS512)).unwrap();
    assert_eq!(key.algorithm(), Algorithm::HS512);
    assert!(key.public_key().is_none());
    assert!(key.kid().unwrap().starts_with("hmac-"));
    assert!(
        !format!("{key:?}").contains(secret.trim()),
        "Debug must not show the secret"
    );
}

#[test]
fn kid_format_picks_the_header_kid() {
    let spec = |kid_format| KeySpec {
        algorithm: None,
        kid_format,
        x5c: true,
    };
    let lib = SigningKey::from_bytes(EC256_SEC1, None, spec(KidFormat::Libtrust)).unwrap();
    let thumb = SigningKey::from_bytes(EC256_SEC1, None, spec(KidFormat::Thumbprint)).unwrap();
    let none = SigningKey::from_bytes(EC256_SEC1, None, spec(KidFormat::None)).unwrap();
    assert_eq!(lib.kid(), lib.libtrust_kid());
    assert_eq!(thumb.kid(), thumb.thumbprint());
    assert_eq!(none.kid(), None);
    assert_ne!(lib.kid(), thumb.kid());
    let header = |k: &SigningKey| {
        String::from_utf8(BASE64URL_NOPAD.decode(k.header_b64().as_bytes()).unwrap()).unwrap()
    };
    assert_eq!(header(&none), r#"{"typ":"JWT","alg":"ES256"}"#);
}

#[test]
fn a_matching_certificate_adds_x5c_and_a_foreign_one_is_refused() {
    let generated = generate::generate(Algorithm::ES256).unwrap();
    let cert = generated.cert_pem.unwrap();
    let key = SigningKey::from_bytes(
        generated.key_pem.as_bytes(),
        Some(cert.as_bytes()),
        KeySpec::default(),
    )
    .unwrap();
    let info = key.certificate().unwrap();
    assert_eq!(info.chain_der.len(), 1);
    let header: serde_json::Value =
        serde_json::from_slice(&BASE64URL_NOPAD.decode(key.header_b64().as_bytes()).unwrap())
            .unwrap();
    let x5c = header["x5c"][0].as_str().unwrap();
    assert_eq!(
        BASE64.decode(x5c.as_bytes()).unwrap(),
        info.chain_der[0],
        "x5c is standard base64 DER"
    );
    assert!(info.not_after > Utc::now());

    let other = generate::generate(Algorithm::ES256)
        .unwrap()
        .cert_pem
        .unwrap();
    let err = SigningKey::from_bytes(
        generated.key_pem.as_bytes(),
        Some(other.as_bytes()),
        KeySpec::default(),
    )
    .unwrap_err();
    assert_eq!(err, KeyError::CertificateMismatch);
    let err = SigningKey::from_bytes(
        generated.key_pem.as_bytes(),
        Some(b"no cert"),
        KeySpec::default(),
    )
    .unwrap_err();
    assert_eq!(err, KeyError::NoCertificate);
}

#[test]
fn without_x5c_the_certificate_is_kept_but_not_sent() {
    let generated = generate::generate(Algorithm::ES256).unwrap();
    let spec = KeySpec {
        x5c: false,
        ..KeySpec::default()
    };
    let key = SigningKey::from_bytes(
        generated.key_pem.as_bytes(),
        generated.cert_pem.as_deref().map(str::as_bytes),
        spec,
    )
    .unwrap();
    assert!(key.certificate().is_some());
    let header: serde_json::Value =
        serde_json::from_slice(&BASE64URL_NOPAD.decode(key.header_b64().as_bytes()).unwrap())
            .unwrap();
    assert!(header.get("x5c").is_none(), "{header}");
    assert_eq!(header["kid"], key.kid().unwrap());
}

#[test]
fn a_zero_led_ec_key_named_by_thumbprint_alone_is_reported_for_registry_3_1() {
    let spec = |kid_format, x5c| KeySpec {
        algorithm: None,
        kid_format,
        x5c,
    };
    for (pem, coordinate) in [(X_ZERO, "x"), (Y_ZERO, "y")] {
        let cert = generate::self_signed_certificate(pem).unwrap();
        let problem = |cert: Option<&str>, kid_format, x5c| {
            SigningKey::from_bytes(
                pem.as_bytes(),
                cert.map(str::as_bytes),
                spec(kid_format, x5c),
            )
            .unwrap()
            .registry_thumbprint_problem()
        };
        let text = problem(None, KidFormat::Thumbprint, true).unwrap();
        assert!(
            text.contains(&format!("{coordinate} coordinate")) && text.contains("x5c"),
            "{text}"
        );
        assert!(
            problem(Some(&cert), KidFormat::Thumbprint, false).is_some(),
            "a certificate that is not sent does not help"
        );
        assert_eq!(problem(Some(&cert), KidFormat::Thumbprint, true), None);
        assert_eq!(problem(None, KidFormat::Libtrust, true), None);
        assert_eq!(problem(None, KidFormat::None, true), None);
    }
    let fine = load(EC256_SEC1, None).unwrap();
    assert_eq!(fine.registry_thumbprint_problem(), None);
    let fine = SigningKey::from_bytes(EC256_SEC1, None, spec(KidFormat::Thumbprint, true));
    assert_eq!(fine.unwrap().registry_thumbprint_problem(), None);
}
