use super::*;
use proptest::prelude::*;
use time::macros::datetime;
use JobStatus::*;

const JOB: &str = "0b5e5a36-3c0b-4c8e-9a43-6d1f1f0e2a10";

fn job_id() -> JobId {
    JOB.parse().unwrap()
}

/// Job `job_abc123` reported done with `out.mp4`, as every shape says it.
fn succeeded_abc123() -> Normalized {
    Normalized {
        ittybit_id: Some("job_abc123".into()),
        job_id: Some(job_id()),
        status: Succeeded,
        progress: Some(100),
        output_url: Some("https://cdn.example.com/out.mp4".into()),
        output: OutputFacts::default(),
        input_size: None,
        details: None,
        error: None,
    }
}

fn normalize(value: Value) -> Normalized {
    normalize_webhook(value.to_string().as_bytes()).unwrap()
}

/// The job object from the contract's `POST /jobs` response.
fn contract_job() -> Value {
    json!({
        "id": "job_abc123", "object": "job", "kind": "video",
        "input": "https://example.com/uploads/video.mp4", "output": null,
        "options": { "width": 1280, "format": "mp4", "quality": "high" },
        "metadata": { "job_id": JOB },
        "status": "queued", "error": null,
        "tasks": [
            { "id": "task_001", "object": "task", "kind": "video", "status": "processing",
              "progress": 42, "error": null,
              "output": { "object": "file", "kind": "video",
                          "url": "https://cdn.example.com/out.mp4",
                          "width": 1280, "height": 720, "duration": 62.5 } }
        ],
        "created_at": 1711900000000_i64, "started_at": null, "finished_at": null,
        "updated_at": 1711900000000_i64
    })
}

#[test]
fn create_request_has_the_contract_shape() {
    let request = CreateJobRequest::new(
        job_id(),
        "https://example.com/uploads/video.mp4",
        JobKind::Video,
        json!({ "width": 1280, "format": "mp4", "quality": "high" }),
        "https://dash.example.com/api/ittybit/callback".to_owned(),
    );
    assert_eq!(
        serde_json::to_value(&request).unwrap(),
        json!({
            "input": "https://example.com/uploads/video.mp4",
            "kind": "video",
            "options": { "width": 1280, "format": "mp4", "quality": "high" },
            "metadata": { "job_id": JOB },
            "webhook_url": "https://dash.example.com/api/ittybit/callback"
        })
    );
    let adaptive = CreateJobRequest::new(
        job_id(),
        "s3://bucket/in.mov",
        JobKind::AdaptiveVideo,
        json!({}),
        String::new(),
    );
    assert_eq!(
        serde_json::to_value(adaptive).unwrap()["kind"],
        "adaptive_video"
    );
}

#[test]
fn reads_the_contract_job_object() {
    let job = IttybitJob::deserialize(contract_job()).unwrap();
    assert_eq!(job.id.as_deref(), Some("job_abc123"));
    assert_eq!(job.status.as_deref(), Some("queued"));
    assert_eq!(job.output, None);
    assert_eq!(job.error, None);
    assert_eq!(job.tasks.len(), 1);
    assert_eq!(job.tasks[0].progress, Some(42));
    assert_eq!(job.tasks[0].status.as_deref(), Some("processing"));
    assert_eq!(
        job.tasks[0].output.as_ref().unwrap().url.as_deref(),
        Some("https://cdn.example.com/out.mp4")
    );
    assert_eq!(job.created_at, Some(datetime!(2024-03-31 15:46:40 UTC)));
    assert_eq!(job.started_at, None);
    assert_eq!(job.finished_at, None);

    assert_eq!(
        job.normalize(),
        Normalized {
            ittybit_id: Some("job_abc123".into()),
            job_id: Some(job_id()),
            status: Queued,
            progress: Some(42),
            output_url: Some("https://cdn.example.com/out.mp4".into()),
            // The task's file object: 1280x720, 62.5 s.
            output: OutputFacts {
                duration_ms: Some(62_500),
                size: None,
                width: Some(1280),
                height: Some(720),
            },
            input_size: None,
            details: None,
            error: None,
        }
    );
}

#[test]
fn the_input_size_is_read_from_the_task_s_input_file_object() {
    // The built-in processor's extension: the job's `input` stays the contract's URL string,
    // the task carries the input as a file object with its size.
    let n = normalize(json!({
        "status": "succeeded",
        "input": "https://example.com/in.mp4",
        "output": "https://cdn.example.com/out.mp4",
        "tasks": [{"input": {"object": "file", "url": "https://example.com/in.mp4",
                              "size": 1_234_567},
                   "output": {"url": "https://cdn.example.com/out.mp4", "size": 4_567}}]
    }));
    assert_eq!(n.input_size, Some(1_234_567));
    assert_eq!(n.output.size, Some(4_567));
    // On the job itself, in any spelling; and in an event envelope.
    let n = normalize(json!({"status": "succeeded", "input": {"filesize": "42"}}));
    assert_eq!(n.input_size, Some(42));
    let n = normalize(json!({"kind": "task.succeeded",
        "data": {"input": {"size": 7}, "outputs": [{"url": "https://x.example/a.png"}]}}));
    assert_eq!(n.input_size, Some(7));
    // Ittybit proper: a bare URL, no size; unreadable sizes read as unknown.
    assert_eq!(normalize(contract_job()).input_size, None);
    for size in [json!(-1), json!("big"), json!(null)] {
        let n = normalize(json!({"status": "succeeded", "tasks": [{"input": {"size": size}}]}));
        assert_eq!(n.input_size, None);
    }
}

#[test]
fn output_facts_come_from_the_first_file_that_has_them() {
    // The job's `output` is a bare URL; the facts are on its task, in any spelling.
    let n = normalize(json!({
        "status": "succeeded",
        "output": "https://cdn.example.com/out.mp3",
        "tasks": [{"output": {"url": "https://cdn.example.com/out.mp3",
                               "duration": "3.0005", "filesize": 48213.0,
                               "width": "wide", "height": -1}}]
    }));
    assert_eq!(
        n.output,
        OutputFacts {
            duration_ms: Some(3_001),
            size: Some(48_213),
            width: None,
            height: None,
        }
    );
    // An envelope's outputs[0] counts too.
    let n = normalize(json!({"kind": "task.succeeded",
        "data": {"outputs": [{"url": "https://x.example/a.png", "width": 640, "height": 360,
                              "size": 1024}]}}));
    assert_eq!(n.output.width, Some(640));
    assert_eq!(n.output.size, Some(1024));
    // No facts anywhere: none.
    assert!(
        normalize(json!({"status": "succeeded", "output": "https://x.example/a"}))
            .output
            .is_empty()
    );
}

#[test]
fn timestamps_may_be_millis_seconds_or_iso() {
    let at = |value: Value| {
        IttybitJob::deserialize(json!({ "created_at": value }))
            .unwrap()
            .created_at
    };
    let expected = Some(datetime!(2024-03-31 15:46:40 UTC));
    assert_eq!(at(json!(1711900000000_i64)), expected);
    assert_eq!(at(json!(1711900000)), expected);
    assert_eq!(at(json!("1711900000000")), expected);
    assert_eq!(at(json!("2024-03-31T15:46:40Z")), expected);
    assert_eq!(at(json!("2024-03-31T17:46:40+02:00")), expected);
    assert_eq!(at(json!("2024-03-31T15:46:40")), expected);
    assert_eq!(
        at(json!(1711900000.5)),
        Some(datetime!(2024-03-31 15:46:40.5 UTC))
    );
    assert_eq!(
        at(json!(1711900000123.0)),
        Some(datetime!(2024-03-31 15:46:40.123 UTC))
    );
    for absent in [
        json!(null),
        json!("yesterday"),
        json!(true),
        json!({}),
        json!(1e300),
        json!(-1e300),
        json!(i64::MAX),
        json!(u64::MAX),
    ] {
        assert_eq!(at(absent.clone()), None, "{absent}");
    }
    assert_eq!(IttybitJob::deserialize(json!({})).unwrap().created_at, None);
}

#[test]
fn unknown_fields_and_odd_types_are_tolerated() {
    let job = IttybitJob::deserialize(json!({
        "id": 17, "status": ["?"], "output": 5, "outputs": "nope",
        "error": 3, "tasks": { "not": "a list" }, "progress": "57.9",
        "brand_new_field": { "deep": [1, 2, 3] }
    }))
    .unwrap();
    assert_eq!(job.id.as_deref(), Some("17"));
    assert_eq!(job.status, None);
    assert_eq!(job.output, None);
    assert!(job.outputs.is_empty());
    assert_eq!(job.error, None);
    assert!(job.tasks.is_empty());
    assert_eq!(job.progress, Some(57));
}

#[test]
fn ittybit_error_is_tolerant() {
    let error: IttybitError = serde_json::from_value(
        json!({ "kind": "job_not_found", "message": "No job job_x", "status": 404 }),
    )
    .unwrap();
    assert_eq!(error.kind, "job_not_found");
    assert_eq!(error.message, "No job job_x");
    assert_eq!(error.to_string(), "job_not_found: No job job_x");

    let bare: IttybitError = serde_json::from_value(json!({ "message": null })).unwrap();
    assert_eq!(bare, IttybitError::default());
    assert_eq!(bare.to_string(), "unknown Ittybit error");
    let message_only: IttybitError =
        serde_json::from_value(json!({ "message": "bad input" })).unwrap();
    assert_eq!(message_only.to_string(), "bad input");
}

#[test]
fn shape_1_the_job_object() {
    let n = normalize(json!({
        "id": "job_abc123", "object": "job", "status": "succeeded",
        "output": "https://cdn.example.com/out.mp4",
        "metadata": { "job_id": JOB }, "error": null,
        "tasks": [{ "id": "task_001", "status": "succeeded", "progress": 100 }],
        "created_at": 1711900000000_i64, "finished_at": 1711900060000_i64
    }));
    assert_eq!(n, succeeded_abc123());
}

#[test]
fn shape_2_the_guide() {
    let done = normalize(json!({
        "id": "job_abc123", "status": "completed",
        "output": { "url": "https://cdn.example.com/out.mp4" },
        "metadata": { "job_id": JOB }
    }));
    assert_eq!(done.status, Succeeded);
    assert_eq!(
        done.output_url.as_deref(),
        Some("https://cdn.example.com/out.mp4")
    );
    assert_eq!(done.job_id, Some(job_id()));

    let failed = normalize(json!({
        "id": "job_abc123", "status": "failed", "output": null,
        "error": { "kind": "decode_error", "message": "Input is not a video" },
        "metadata": { "job_id": JOB }
    }));
    assert_eq!(failed.status, Failed);
    assert_eq!(failed.error.as_deref(), Some("Input is not a video"));
    assert_eq!(failed.output_url, None);
}

#[test]
fn shape_3_an_event_envelope_around_a_task() {
    let n = normalize(json!({
        "id": "evt_123", "object": "event", "kind": "task.succeeded",
        "data": {
            "id": "task_001", "object": "task", "job_id": "job_abc123",
            "status": "succeeded", "progress": 100,
            "metadata": { "job_id": JOB },
            "outputs": [{ "object": "file", "url": "https://cdn.example.com/out.mp4" }]
        },
        "created_at": 1711900060000_i64
    }));
    assert_eq!(n, succeeded_abc123());
}

#[test]
fn shape_3_an_event_envelope_around_a_job() {
    let n = normalize(json!({
        "id": "evt_124", "object": "event", "kind": "job.failed",
        "data": { "id": "job_abc123", "object": "job", "status": "failed",
                  "error": "Input unreachable", "metadata": { "job_id": JOB } }
    }));
    assert_eq!(n.ittybit_id.as_deref(), Some("job_abc123"));
    assert_eq!(n.status, Failed);
    assert_eq!(n.error.as_deref(), Some("Input unreachable"));
    assert_eq!(n.job_id, Some(job_id()));
}

#[test]
fn an_envelope_without_a_status_takes_it_from_the_event_kind() {
    for (kind, status) in [
        ("task.succeeded", Succeeded),
        ("job.completed", Succeeded),
        ("task.failed", Failed),
        ("job.canceled", Cancelled),
        ("task.queued", Queued),
        ("task.progress", Processing),
    ] {
        let n = normalize(json!({
            "id": "evt_1", "object": "event", "kind": kind,
            "data": { "id": "task_1", "object": "task", "job_id": "job_1" }
        }));
        assert_eq!(n.status, status, "{kind}");
        assert_eq!(n.ittybit_id.as_deref(), Some("job_1"));
    }
}

#[test]
fn a_task_without_its_job_id_names_no_ittybit_job() {
    let n = normalize(json!({
        "id": "evt_1", "object": "event", "kind": "task.succeeded",
        "data": { "id": "task_1", "object": "task", "status": "succeeded" }
    }));
    assert_eq!(n.ittybit_id, None);
    assert_eq!(n.job_id, None);
}

#[test]
fn status_words_map_onto_job_statuses() {
    for (raw, status) in [
        ("succeeded", Succeeded),
        ("completed", Succeeded),
        ("ready", Succeeded),
        ("Completed", Succeeded),
        ("failed", Failed),
        ("error", Failed),
        ("cancelled", Cancelled),
        ("canceled", Cancelled),
        ("queued", Queued),
        ("processing", Processing),
        ("pending", Processing),
        ("uploading", Processing),
        ("", Processing),
    ] {
        assert_eq!(normalize(json!({ "status": raw })).status, status, "{raw}");
    }
    assert_eq!(normalize(json!({ "id": "job_1" })).status, Processing);
}

#[test]
fn output_url_follows_the_contract_order() {
    let url = |value: Value| normalize(value).output_url;
    let task = |u: &str| json!({ "output": { "url": u } });
    assert_eq!(
        url(
            json!({ "output": "https://a/1", "outputs": [{ "url": "https://a/2" }],
                    "tasks": [task("https://a/3")] })
        ),
        Some("https://a/1".into())
    );
    assert_eq!(
        url(json!({ "output": { "url": "https://a/1" }, "tasks": [task("https://a/3")] })),
        Some("https://a/1".into())
    );
    assert_eq!(
        url(
            json!({ "outputs": [{ "url": "https://a/2" }, { "url": "https://a/9" }],
                    "tasks": [task("https://a/3")] })
        ),
        Some("https://a/2".into())
    );
    assert_eq!(
        url(json!({ "tasks": [task("https://a/3"), task("https://a/4")] })),
        Some("https://a/4".into())
    );
    // The last task, not the last task with an output.
    assert_eq!(
        url(json!({ "tasks": [task("https://a/3"), { "output": null }] })),
        None
    );
    assert_eq!(url(json!({ "output": null, "outputs": [] })), None);
}

#[test]
fn only_http_output_urls_are_kept() {
    let url = |value: Value| normalize(value).output_url;
    assert_eq!(url(json!({ "output": "s3://bucket/out.mp4" })), None);
    assert_eq!(url(json!({ "output": "javascript:alert(1)" })), None);
    assert_eq!(
        url(json!({ "output": " HTTP://cdn.example.com/a.mp4 " })),
        Some("HTTP://cdn.example.com/a.mp4".into())
    );
    // An unusable candidate falls through to the next one.
    assert_eq!(
        url(json!({ "output": "s3://bucket/out.mp4",
                    "outputs": [{ "url": "https://cdn.example.com/out.mp4" }] })),
        Some("https://cdn.example.com/out.mp4".into())
    );
}

#[test]
fn error_is_a_string_or_a_message() {
    let error = |value: Value| normalize(json!({ "error": value })).error;
    assert_eq!(error(json!("boom")), Some("boom".into()));
    assert_eq!(
        error(json!({ "kind": "x", "message": "boom" })),
        Some("boom".into())
    );
    assert_eq!(error(json!({ "kind": "x" })), None);
    assert_eq!(error(json!("  ")), None);
    assert_eq!(error(json!(null)), None);
}

#[test]
fn job_id_must_be_a_uuid() {
    let id = |value: Value| normalize(json!({ "metadata": { "job_id": value } })).job_id;
    assert_eq!(id(json!(JOB)), Some(job_id()));
    assert_eq!(id(json!("job_abc123")), None);
    assert_eq!(id(json!(42)), None);
    assert_eq!(normalize(json!({ "metadata": "x" })).job_id, None);
    assert_eq!(normalize(json!({})).job_id, None);
}

#[test]
fn an_envelope_may_carry_the_job_id_outside_data() {
    let n = normalize(json!({
        "object": "event", "kind": "job.succeeded", "metadata": { "job_id": JOB },
        "data": { "id": "job_abc123", "metadata": { "job_id": "not-a-uuid" } }
    }));
    assert_eq!(n.job_id, Some(job_id()));
    assert_eq!(n.status, Succeeded);
}

#[test]
fn progress_comes_from_the_object_or_its_tasks() {
    let progress = |value: Value| normalize(value).progress;
    assert_eq!(progress(json!({ "progress": 12 })), Some(12));
    assert_eq!(
        progress(json!({ "progress": 12, "tasks": [{ "progress": 80 }] })),
        Some(12)
    );
    assert_eq!(
        progress(json!({ "tasks": [{ "progress": 100 }, { "progress": 30 }] })),
        Some(30)
    );
    assert_eq!(
        progress(json!({ "tasks": [{ "progress": 70 }, { "progress": null }] })),
        Some(70)
    );
    assert_eq!(progress(json!({ "progress": 42.9 })), Some(42));
    assert_eq!(progress(json!({ "progress": 150 })), Some(100));
    assert_eq!(progress(json!({ "progress": -5 })), Some(0));
    assert_eq!(progress(json!({ "progress": null })), None);
    assert_eq!(progress(json!({ "tasks": [] })), None);
}

#[test]
fn bodies_that_are_not_json_objects_are_refused() {
    for body in [&b"{not json"[..], b"", b"\xff\xfe"] {
        assert!(matches!(
            normalize_webhook(body),
            Err(PayloadError::Json(_))
        ));
    }
    for body in [&b"[]"[..], b"\"succeeded\"", b"42", b"null"] {
        assert!(matches!(
            normalize_webhook(body),
            Err(PayloadError::NotAnObject)
        ));
    }
}

/// One webhook delivery, before it is put on the wire.
#[derive(Clone, Debug)]
enum Delivery {
    Queued,
    Processing(Option<f64>),
    Terminal(JobStatus),
}

impl Delivery {
    /// The delivery as a body in one of the contract's three shapes.
    fn body(&self, shape: u8) -> Vec<u8> {
        let (status, progress) = match self {
            Delivery::Queued => ("queued", None),
            Delivery::Processing(p) => ("processing", *p),
            Delivery::Terminal(Succeeded) => {
                if shape == 1 {
                    ("completed", None)
                } else {
                    ("succeeded", None)
                }
            }
            Delivery::Terminal(Failed) => ("failed", None),
            Delivery::Terminal(_) => ("canceled", None),
        };
        let output = (status == "succeeded" || status == "completed")
            .then_some("https://cdn.example.com/out.mp4");
        let body = match shape {
            0 => json!({
                "id": "job_1", "object": "job", "status": status, "output": output,
                "metadata": { "job_id": JOB },
                "tasks": [{ "id": "task_1", "status": status, "progress": progress }]
            }),
            1 => json!({
                "id": "job_1", "status": status, "output": { "url": output },
                "metadata": { "job_id": JOB },
                "tasks": [{ "progress": progress }]
            }),
            _ => json!({
                "id": "evt_1", "object": "event", "kind": format!("task.{status}"),
                "data": { "id": "task_1", "object": "task", "job_id": "job_1",
                          "status": status, "progress": progress,
                          "metadata": { "job_id": JOB },
                          "outputs": [{ "url": output }] }
            }),
        };
        body.to_string().into_bytes()
    }
}

fn non_terminal() -> impl Strategy<Value = Delivery> {
    prop_oneof![
        Just(Delivery::Queued),
        Just(Delivery::Processing(None)),
        (-10.0..120.0f64).prop_map(|p| Delivery::Processing(Some(p))),
    ]
}

/// Non-terminal deliveries plus one or more copies of a single outcome, in any order.
fn deliveries() -> impl Strategy<Value = (JobStatus, Vec<(Delivery, u8)>)> {
    let outcome = prop_oneof![Just(Succeeded), Just(Failed), Just(Cancelled)];
    (
        prop::collection::vec(non_terminal(), 0..20),
        outcome,
        1..4usize,
    )
        .prop_flat_map(|(mut list, outcome, copies)| {
            list.extend(std::iter::repeat_n(Delivery::Terminal(outcome), copies));
            let shapes = prop::collection::vec(0..3u8, list.len());
            (Just(outcome), Just(list).prop_shuffle(), shapes)
        })
        .prop_map(|(outcome, list, shapes)| (outcome, list.into_iter().zip(shapes).collect()))
}

proptest! {
    /// Whatever the shape, a delivery names the dashboard job and Ittybit's, and says the
    /// status and progress it carries. (How deliveries fold into a job, in any order, is
    /// checked against the database in `server/tests/api/reports.rs`.)
    #[test]
    fn every_shape_of_a_delivery_reads_the_same((outcome, list) in deliveries()) {
        for (delivery, shape) in &list {
            let n = normalize_webhook(&delivery.body(*shape)).unwrap();
            prop_assert_eq!(n.job_id, Some(job_id()));
            prop_assert_eq!(n.ittybit_id.as_deref(), Some("job_1"));
            match delivery {
                Delivery::Queued => prop_assert_eq!(n.status, Queued),
                Delivery::Processing(p) => {
                    prop_assert_eq!(n.status, Processing);
                    let expected = p.map(|p| p.clamp(0.0, 100.0) as u8);
                    prop_assert_eq!(n.progress, expected);
                }
                Delivery::Terminal(status) => {
                    prop_assert_eq!(n.status, *status);
                    prop_assert_eq!(*status, outcome);
                    let output = (*status == Succeeded).then_some("https://cdn.example.com/out.mp4");
                    prop_assert_eq!(n.output_url.as_deref(), output);
                }
            }
        }
    }
}
