//! `GET /api/openapi.json`: public, and describing every route of the JSON API.

use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::spawn_app;

#[tokio::test]
async fn the_api_description_is_public_and_lists_every_route() {
    let app = spawn_app().await;
    // Access rule: public. No credentials of any kind are sent.
    let response = reqwest::get(app.url("/api/openapi.json")).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "application/json");
    let doc: Value = response.json().await.unwrap();
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3."),
        "{}",
        doc["openapi"]
    );

    let mut routes: Vec<String> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .unwrap()
                .keys()
                .map(move |method| format!("{} {path}", method.to_uppercase()))
        })
        .collect();
    routes.sort();
    assert_eq!(
        routes,
        [
            "DELETE /api/jobs/{id}",
            "GET /api/events",
            "GET /api/jobs",
            "GET /api/jobs/counts",
            "GET /api/jobs/{id}",
            "GET /api/uploads/{id}",
            "GET /healthz",
            "GET /readyz",
            "POST /api/ittybit/callback",
            "POST /api/jobs",
            "POST /api/jobs/bulk",
            "POST /api/jobs/{id}/cancel",
            "POST /api/jobs/{id}/retry",
            "POST /api/uploads",
            "POST /api/uploads/{id}/complete",
            "PUT /api/uploads/{id}/parts/{n}",
        ]
    );
    // The schemas the routes refer to are there, with the job's statuses spelled out.
    let schemas = &doc["components"]["schemas"];
    for name in [
        "Job",
        "JobPage",
        "JobSubmission",
        "ErrorBody",
        "ActionAnswer",
        "BulkRequest",
        "BulkAnswer",
        "NewUpload",
        "UploadStatus",
        "JobAction",
    ] {
        assert!(schemas[name].is_object(), "{name} is described");
    }
    let statuses: Vec<&str> = schemas["JobStatus"]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    let expected: Vec<&str> = reeltime::JobStatus::ALL
        .iter()
        .map(|s| s.as_str())
        .collect();
    assert_eq!(statuses, expected);
}
