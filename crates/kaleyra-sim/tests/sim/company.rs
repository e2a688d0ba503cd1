//! The company and its virtual backgrounds.

use reqwest::{
    StatusCode,
    multipart::{Form, Part},
};
use serde_json::json;

use crate::{Ctx, MIB, assert_error, is_iso_millis, is_lower_hex, jpeg, jpeg_part};

#[tokio::test]
async fn company_get_and_update() {
    let ctx = Ctx::new().await;
    let (status, body) = ctx.get("/v2/company").await;
    assert_eq!(status, StatusCode::OK);
    let default = json!({"company": {
        "name": "Simulated Company", "default_language": "en", "default_background": null,
        "end_call_redirect_url": null, "user_details_provider_url": null,
        "end_call_redirect_timeout_ms": null
    }});
    assert_eq!(body, default);

    let (status, body) = ctx
        .put(
            "/v2/company",
            json!({"default_language": "it", "end_call_redirect_url": "https://example.org/bye",
                   "end_call_redirect_timeout_ms": 5000, "user_details_provider_url": "https://example.org/udp",
                   "background_alias": null}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let updated = json!({"company": {
        "name": "Simulated Company", "default_language": "it", "default_background": null,
        "end_call_redirect_url": "https://example.org/bye", "user_details_provider_url": "https://example.org/udp",
        "end_call_redirect_timeout_ms": 5000
    }});
    assert_eq!(body, updated);
    assert_eq!(ctx.get("/v2/company").await.1, updated);

    let unknown = ctx
        .put(
            "/v2/company",
            json!({"background_alias": "0".repeat(32), "default_language": "fr"}),
        )
        .await;
    assert_error(&unknown, StatusCode::NOT_FOUND, "not_found");
    assert_eq!(
        ctx.get("/v2/company").await.1,
        updated,
        "a refused update changes nothing"
    );
}

#[tokio::test]
async fn virtual_backgrounds() {
    let ctx = Ctx::new().await;
    let (status, body) = ctx.upload_background(jpeg_part(1000)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let bg = &body["virtual_background"];
    let alias = bg["background_alias"].as_str().unwrap().to_owned();
    assert!(alias.len() == 32 && is_lower_hex(&alias), "{alias}");
    assert!(bg["url"].as_str().unwrap().starts_with("https://"));
    assert!(is_iso_millis(bg["creation_date"].as_str().unwrap()));
    assert_eq!(bg.as_object().unwrap().len(), 3);

    let (status, company) = ctx
        .put("/v2/company", json!({"background_alias": alias}))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        company["company"]["default_background"],
        json!({"alias": alias, "url": bg["url"], "creation_date": bg["creation_date"]})
    );

    // Only the content decides: a PNG is refused even when it says image/jpeg.
    let png = Part::bytes(b"\x89PNG\r\n\x1a\n0000".to_vec())
        .file_name("bg.jpg")
        .mime_str("image/jpeg")
        .unwrap();
    assert_error(
        &ctx.upload_background(png).await,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    );

    // A part without a filename is a plain field, not a file.
    let field = Part::bytes(jpeg(100)).mime_str("image/jpeg").unwrap();
    assert_error(
        &ctx.upload_background(field).await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
    );

    // Wrong part name.
    assert_error(
        &ctx.upload_form(Form::new().part("background", jpeg_part(100)))
            .await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
    );

    // Not multipart at all.
    assert_error(
        &ctx.post("/v2/company/virtual-background", json!({})).await,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    );

    // Size: exactly 16 MiB passes; one byte more is 413, and so is a much larger body.
    let (status, body) = ctx.upload_background(jpeg_part(16 * MIB)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_error(
        &ctx.upload_background(jpeg_part(16 * MIB + 1)).await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
    );
    assert_error(
        &ctx.upload_background(jpeg_part(20 * MIB)).await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
    );

    // At most 10 per company: 2 so far, 8 more, then 409.
    for _ in 0..8 {
        assert_eq!(
            ctx.upload_background(jpeg_part(64)).await.0,
            StatusCode::CREATED
        );
    }
    assert_error(
        &ctx.upload_background(jpeg_part(64)).await,
        StatusCode::CONFLICT,
        "too_many_backgrounds",
    );
}

#[tokio::test]
async fn background_parts_must_be_declared_jpeg_and_be_jpeg() {
    let ctx = Ctx::new().await;
    // JPEG bytes declared as something else, or not declared at all: 415.
    for part in [
        Part::bytes(jpeg(100))
            .file_name("bg.jpg")
            .mime_str("image/png")
            .unwrap(),
        Part::bytes(jpeg(100))
            .file_name("bg.jpg")
            .mime_str("application/octet-stream")
            .unwrap(),
        Part::bytes(jpeg(100)).file_name("bg.jpg"),
    ] {
        assert_error(
            &ctx.upload_background(part).await,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        );
    }
    // Size comes first: an oversized part is 413 whatever it declares.
    let big_png = Part::bytes(vec![0u8; 16 * MIB + 1])
        .file_name("bg.png")
        .mime_str("image/png")
        .unwrap();
    assert_error(
        &ctx.upload_background(big_png).await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
    );
    assert!(
        ctx.sim.backgrounds().is_empty(),
        "nothing refused is stored"
    );

    let (status, body) = ctx.upload_background(jpeg_part(1000)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let alias = body["virtual_background"]["background_alias"]
        .as_str()
        .unwrap()
        .to_owned();
    let stored = ctx.sim.backgrounds();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].alias, alias);
    assert_eq!(stored[0].filename, "background.jpg");
    assert_eq!(stored[0].content_type, "image/jpeg");
    assert_eq!(stored[0].size, 1000);
    assert_eq!(stored[0].url, body["virtual_background"]["url"]);
    let (status, listed) = ctx.get("/_sim/backgrounds").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(listed[0]["alias"], alias.as_str());
    assert_eq!(listed[0]["filename"], "background.jpg");
}

#[tokio::test]
async fn company_state_is_readable_from_rust_and_the_control_api() {
    let ctx = Ctx::new().await;
    let company = ctx.sim.company();
    assert_eq!(company.name, "Simulated Company");
    assert_eq!(company.default_language, "en");
    assert_eq!(company.default_background, None);

    let (_, bg) = ctx.upload_background(jpeg_part(10)).await;
    let alias = bg["virtual_background"]["background_alias"]
        .as_str()
        .unwrap();
    ctx.put(
        "/v2/company",
        json!({"background_alias": alias, "default_language": "it", "end_call_redirect_url": "https://example.org/bye"}),
    )
    .await;
    let company = ctx.sim.company();
    assert_eq!(company.default_background.as_deref(), Some(alias));
    assert_eq!(company.default_language, "it");
    assert_eq!(
        company.end_call_redirect_url.as_deref(),
        Some("https://example.org/bye")
    );
    let (status, body) = ctx.get("/_sim/company").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["default_background"], alias);
    assert_eq!(body["name"], "Simulated Company");

    // An unknown alias: 404 and nothing changes.
    assert_error(
        &ctx.put(
            "/v2/company",
            json!({"background_alias": "f".repeat(32), "default_language": "de"}),
        )
        .await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    assert_eq!(ctx.sim.company(), company);

    ctx.sim.reset();
    assert_eq!(ctx.sim.company().default_background, None);
    assert!(ctx.sim.backgrounds().is_empty());
}
