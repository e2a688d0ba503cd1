use super::test_harness::{AUDIENCE, ISSUER};
use super::{BearerSettings, BearerSetupError, BearerVerifier};

#[test]
fn bad_settings_are_refused_at_start_up() {
    let url = "https://id.telecons.example/.well-known/jwks.json";
    let build = |settings: BearerSettings| BearerVerifier::new(settings).map(|_| ());
    assert!(build(BearerSettings::new(ISSUER, AUDIENCE, url)).is_ok());
    assert!(matches!(
        build(BearerSettings::new(" ", AUDIENCE, url)),
        Err(BearerSetupError::Empty { name: "JWT_ISSUER" })
    ));
    assert!(matches!(
        build(BearerSettings::new(ISSUER, "", url)),
        Err(BearerSetupError::Empty {
            name: "JWT_AUDIENCE"
        })
    ));
    let mut no_claim = BearerSettings::new(ISSUER, AUDIENCE, url);
    no_claim.user_id_claim.clear();
    assert!(matches!(
        build(no_claim),
        Err(BearerSetupError::Empty {
            name: "JWT_USER_ID_CLAIM"
        })
    ));
    for url in [
        "id.telecons.example/jwks",
        "ftp://id.telecons.example/jwks",
        "file:///etc/jwks",
    ] {
        assert!(
            matches!(
                build(BearerSettings::new(ISSUER, AUDIENCE, url)),
                Err(BearerSetupError::JwksUrl(_))
            ),
            "{url}"
        );
    }
}
