//! Rooms: validation, create, get, list, delete; and the uploads of a room.

use std::collections::BTreeMap;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use kaleyra_sim::SimOptions;

use crate::{Ctx, assert_error, is_iso_millis, is_lower_hex};

#[tokio::test]
async fn room_validation_rules() {
    let ctx = Ctx::new().await;
    ctx.doc_and_pat().await;
    ctx.user("pat2", "basic").await;
    let p = |id: &str| json!({"user_id": id});

    let one = ctx
        .post("/v2/rooms", json!({"participants": [p("doc")]}))
        .await;
    assert_error(&one, StatusCode::BAD_REQUEST, "invalid_request");

    let mut many = vec![p("doc")];
    for i in 0..25 {
        let id = format!("u{i}");
        ctx.user(&id, "basic").await;
        many.push(p(&id));
    }
    let too_many = ctx.post("/v2/rooms", json!({"participants": many})).await;
    assert_error(&too_many, StatusCode::BAD_REQUEST, "invalid_request");
    many.pop();
    let (status, body) = ctx.post("/v2/rooms", json!({"participants": many})).await;
    assert_eq!(
        status,
        StatusCode::CREATED,
        "25 participants are allowed: {body}"
    );

    let unknown = ctx
        .post("/v2/rooms", json!({"participants": [p("doc"), p("ghost")]}))
        .await;
    assert_error(&unknown, StatusCode::BAD_REQUEST, "user_not_found");
    assert!(unknown.1["message"].as_str().unwrap().contains("ghost"));

    let twice = ctx
        .post("/v2/rooms", json!({"participants": [p("doc"), p("doc")]}))
        .await;
    assert_error(&twice, StatusCode::BAD_REQUEST, "invalid_request");

    let no_plus = ctx
        .post("/v2/rooms", json!({"participants": [p("pat"), p("pat2")]}))
        .await;
    assert_error(&no_plus, StatusCode::BAD_REQUEST, "no_plus_user");

    // The Kaleyra role decides: promote a patient and the room is allowed.
    ctx.put("/v2/users/pat", json!({"role": "plus"})).await;
    let (status, _) = ctx
        .post("/v2/rooms", json!({"participants": [p("pat"), p("pat2")]}))
        .await;
    assert_eq!(status, StatusCode::CREATED);

    ctx.assert_invalid(
        Method::POST,
        "/v2/rooms",
        [
            json!({"participants": [p("doc"), p("pat")], "duration": 59}),
            json!({"participants": [p("doc"), p("pat")], "recording": "always"}),
            json!({"participants": [p("doc"), p("pat")], "call_type": "video"}),
            json!({"participants": [p("doc"), p("pat")], "duration": -60}),
            json!({"participants": [{"user_id": "doc", "tools": {"chat": "yes"}}, p("pat")]}),
        ],
    )
    .await;
    assert_eq!(ctx.sim.rooms().len(), 2, "refused rooms leave no trace");
}

#[tokio::test]
async fn room_create_get_list_delete() {
    let ctx = Ctx::new().await;
    ctx.doc_and_pat().await;
    let tools = json!({"chat": true, "screen_sharing": false});
    let (status, created) = ctx
        .post(
            "/v2/rooms",
            json!({
                "participants": [
                    {"user_id": "doc", "is_admin": true, "tools": tools},
                    {"user_id": "pat", "is_admin": false, "tools": null}
                ],
                "duration": 3600, "live": false, "recording": "manual",
                "call_type": "audio_upgradable", "description": "tc:123 spec:abc"
            }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["id"].as_str().unwrap().to_owned();
    assert!(
        id.starts_with("room_") && id.len() == 17 && is_lower_hex(&id[5..]),
        "{id}"
    );
    assert!(
        is_iso_millis(created["creationDate"].as_str().unwrap()),
        "{created}"
    );
    let links: Vec<&str> = created["participants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["link"].as_str().unwrap())
        .collect();
    for link in &links {
        let token = link
            .strip_prefix("https://sandbox.bandyer.com/eu/direct-rest-call-handler/")
            .unwrap();
        assert!(token.len() == 26 && is_lower_hex(token), "{link}");
    }
    assert_ne!(links[0], links[1]);
    let expected = json!({
        "id": id, "recording": "manual", "recordingStatus": "stopped", "callType": "audio_upgradable",
        "description": "tc:123 spec:abc", "status": "NOT_RUNNING", "disabled": false,
        "creationDate": created["creationDate"], "durationInSeconds": 3600, "durationUsedInSeconds": 0,
        "live": false,
        "participants": [
            {"user_id": "doc", "is_admin": true, "link": links[0]},
            {"user_id": "pat", "is_admin": false, "link": links[1]}
        ]
    });
    assert_eq!(created, expected);
    assert_eq!(
        ctx.get(&format!("/v2/rooms/{id}")).await,
        (StatusCode::OK, expected.clone())
    );

    // Defaults: unlimited, live, no recording, audio_video, no description.
    let (_, plain) = ctx.post("/v2/rooms", json!({"participants": [{"user_id": "doc"}, {"user_id": "pat"}], "duration": null, "live": null})).await;
    assert_eq!(plain["durationInSeconds"], 0);
    assert_eq!(plain["live"], true);
    assert_eq!(plain["recording"], "none");
    assert_eq!(plain["callType"], "audio_video");
    assert_eq!(plain["description"], Value::Null);
    assert_eq!(plain["participants"][1]["is_admin"], false);

    let (status, list) = ctx.get("/v2/rooms").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list, json!([expected, plain]));

    // The simulator keeps the tools per participant.
    let rooms = ctx.sim.rooms();
    let stored = rooms.iter().find(|r| r.id == id).unwrap();
    let want: BTreeMap<String, bool> = serde_json::from_value(tools).unwrap();
    assert_eq!(stored.participants[0].tools.as_ref(), Some(&want));
    assert_eq!(stored.participants[1].tools, None);
    assert_eq!(
        (
            stored.duration_in_seconds,
            stored.live,
            stored.recording.as_str(),
            stored.call_type.as_str()
        ),
        (3600, false, "manual", "audio_upgradable")
    );
    assert_eq!(stored.description.as_deref(), Some("tc:123 spec:abc"));
    assert_eq!(stored.participants[0].link, links[0]);
    let (_, ctl) = ctx.get("/_sim/rooms").await;
    assert_eq!(
        ctl[0]["participants"][0]["tools"],
        json!({"chat": true, "screen_sharing": false})
    );
    assert_eq!(ctl[0]["participants"][0]["is_admin"], true);

    assert_eq!(
        ctx.delete(&format!("/v2/rooms/{id}")).await,
        (StatusCode::NO_CONTENT, Value::Null)
    );
    assert_error(
        &ctx.get(&format!("/v2/rooms/{id}")).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    assert_error(
        &ctx.delete(&format!("/v2/rooms/{id}")).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    assert_eq!(ctx.get("/v2/rooms").await.1, json!([plain]));
}

#[tokio::test]
async fn uploads_list_delete_seed() {
    let ctx = Ctx::new().await;
    let room = ctx.room().await;
    let room_id = room["id"].as_str().unwrap();

    assert_eq!(
        ctx.get(&format!("/v2/uploads?room_id={room_id}")).await,
        (StatusCode::OK, json!([]))
    );
    let key1 = ctx.sim.seed_upload(room_id, "report.pdf", 1234).unwrap();
    assert!(key1.starts_with("upl_") && is_lower_hex(&key1[4..]));
    assert_eq!(ctx.sim.seed_upload("room_000000000000", "x", 1), None);

    let (status, seeded) = ctx
        .post(
            &format!("/_sim/rooms/{room_id}/uploads"),
            json!({"name": "scan.png", "size": 99}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let key2 = seeded["key"].as_str().unwrap().to_owned();
    assert_error(
        &ctx.post(
            "/_sim/rooms/room_000000000000/uploads",
            json!({"name": "x", "size": 1}),
        )
        .await,
        StatusCode::NOT_FOUND,
        "not_found",
    );

    let (status, list) = ctx.get(&format!("/v2/uploads?room_id={room_id}")).await;
    assert_eq!(status, StatusCode::OK);
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(list[0]["key"], key1);
    assert_eq!(list[0]["name"], "report.pdf");
    assert_eq!(list[0]["size"], 1234);
    assert_eq!(list[0]["room_id"], room_id);
    assert!(is_iso_millis(list[0]["creation_date"].as_str().unwrap()));
    assert_eq!(list[0].as_object().unwrap().len(), 5);
    assert_eq!(list[1], seeded);

    assert_eq!(
        ctx.get("/v2/uploads?room_id=room_000000000000").await,
        (StatusCode::OK, json!([]))
    );
    assert_error(
        &ctx.get("/v2/uploads").await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
    );

    assert_eq!(
        ctx.delete(&format!("/v2/uploads/{key1}")).await.0,
        StatusCode::NO_CONTENT
    );
    assert_error(
        &ctx.delete(&format!("/v2/uploads/{key1}")).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    assert_eq!(
        ctx.get(&format!("/v2/uploads?room_id={room_id}")).await.1,
        json!([seeded])
    );
    let _ = key2;
}

#[tokio::test]
async fn links_to_itself_point_at_its_own_call_page() {
    let ctx = Ctx::with_options(SimOptions::default().links_to_itself()).await;
    ctx.doc_and_pat().await;
    let (status, created) = ctx
        .post(
            "/v2/rooms",
            json!({"participants": [{"user_id": "doc", "is_admin": true}, {"user_id": "pat"}]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let link = created["participants"][1]["link"].as_str().unwrap();
    let prefix = format!("{}/_sim/call/", ctx.sim.base_url());
    let token = link
        .strip_prefix(&prefix)
        .unwrap_or_else(|| panic!("{link}"));
    assert!(token.len() == 26 && is_lower_hex(token), "{link}");

    let page = ctx
        .http
        .get(format!("{link}?language=it"))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    assert_eq!(page.headers()["content-type"], "text/html; charset=utf-8");
    let html = page.text().await.unwrap();
    assert!(html.contains("Simulated Kaleyra call"), "{html}");
    assert!(
        html.contains(&format!("<code id=\"token\">{token}</code>")),
        "{html}"
    );
    assert!(
        html.contains("<code id=\"options\">language=it</code>"),
        "{html}"
    );
}
