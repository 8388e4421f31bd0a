//! The dashboard's uploader: drop a file (or choose one), watch it go up, and it becomes a job
//! with the preset the form shows (issue 13).
//!
//! The browser checks the file's kind before a byte is sent (the same rule the server applies,
//! [`reeltime::upload::NewUpload::validate`]). The file then goes up through `/api/uploads` in
//! parts with a progress bar. A part that fails is sent again after a pause, up to
//! [`TRIES`] times; before each retry the browser asks the server which parts arrived, so
//! nothing is sent twice. Once complete, the upload's URL is submitted as the job's input, as
//! a pasted URL would be.
//!
//! Without JavaScript the drop zone stays hidden: pasting a URL works as before.

use leptos::html;
use leptos::prelude::*;

use crate::api::SubmitJob;

/// Attempts per part before the upload stops with an error.
#[cfg_attr(not(feature = "hydrate"), allow(dead_code))]
pub const TRIES: u32 = 5;

/// Where an upload is (only the browser moves it on).
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(not(feature = "hydrate"), allow(dead_code))]
pub enum Upload {
    Idle,
    /// `sent` of `size` bytes of `name` are up.
    Sending {
        name: String,
        sent: f64,
        size: f64,
    },
    /// Up, and submitted as a job.
    Done(String),
    Failed(String),
}

#[component]
pub fn Uploader(submit: ServerAction<SubmitJob>, preset: NodeRef<html::Select>) -> impl IntoView {
    let state = RwSignal::new(Upload::Idle);
    let over = RwSignal::new(false);
    // Shown only once hydrated: it needs the browser's code.
    let hydrated = RwSignal::new(false);
    Effect::new(move |_| hydrated.set(true));

    let start = move |file: Option<browser::File>| {
        let Some(file) = file else { return };
        browser::start(file, state, submit, preset);
    };
    let busy = move || matches!(state.get(), Upload::Sending { .. });
    let status = move || match state.get() {
        Upload::Idle => String::new(),
        Upload::Sending { name, sent, size } => {
            let percent = if size > 0.0 {
                sent / size * 100.0
            } else {
                100.0
            };
            format!("Uploading {name}: {percent:.0} %")
        }
        Upload::Done(name) => format!("Uploaded {name}; the job is below."),
        Upload::Failed(_) => String::new(),
    };
    let error = move || match state.get() {
        Upload::Failed(message) => Some(message),
        _ => None,
    };
    let progress = move || match state.get() {
        Upload::Sending { sent, size, .. } => Some((sent, size)),
        _ => None,
    };

    view! {
        <div
            class="drop-zone"
            class:over=move || over.get()
            hidden=move || !hydrated.get()
            data-state=move || match state.get() {
                Upload::Idle => "idle",
                Upload::Sending { .. } => "sending",
                Upload::Done(_) => "done",
                Upload::Failed(_) => "failed",
            }
            on:dragover=move |ev| {
                ev.prevent_default();
                over.set(true);
            }
            on:dragleave=move |_| over.set(false)
            on:drop=move |ev| {
                ev.prevent_default();
                over.set(false);
                if !busy() {
                    start(browser::dropped(&ev));
                }
            }
        >
            <label for="upload_file">
                "Or drop a video, audio or image file here, or "
                <span class="choose">"choose one"</span>
            </label>
            <input
                id="upload_file"
                type="file"
                class="visually-hidden"
                accept="video/*,audio/*,image/*"
                disabled=busy
                on:change=move |ev| start(browser::chosen(&ev))
            />
            <progress
                class="upload-progress"
                hidden=move || progress().is_none()
                max=move || progress().map_or(1.0, |(_, size)| size)
                value=move || progress().map_or(0.0, |(sent, _)| sent)
            ></progress>
            <p class="upload-status" role="status">{status}</p>
            <p class="field-error" role="alert">{error}</p>
        </div>
    }
}

/// In the browser: reading the file and sending it.
#[cfg(feature = "hydrate")]
mod browser {
    use leptos::html;
    use leptos::prelude::*;
    use reeltime::upload::NewUpload;
    use serde::Deserialize;
    use wasm_bindgen::closure::Closure;
    use wasm_bindgen::{JsCast, JsValue};

    use super::{Upload, TRIES};
    use crate::api::SubmitJob;

    pub type File = web_sys::File;

    pub fn chosen(ev: &leptos::ev::Event) -> Option<File> {
        let input = ev.target()?.dyn_into::<web_sys::HtmlInputElement>().ok()?;
        let file = input.files()?.get(0);
        // Choosing the same file again later fires `change` again.
        input.set_value("");
        file
    }

    pub fn dropped(ev: &leptos::ev::DragEvent) -> Option<File> {
        ev.data_transfer()?.files()?.get(0)
    }

    /// The server's answer about an upload (or its error).
    #[derive(Deserialize, Default)]
    struct Answer {
        id: Option<String>,
        part_bytes: Option<f64>,
        parts: Option<u32>,
        #[serde(default)]
        received: Vec<u32>,
        input_url: Option<String>,
        message: Option<String>,
        #[serde(default)]
        fields: std::collections::BTreeMap<String, String>,
    }

    impl Answer {
        /// What went wrong, in the server's words.
        fn problem(&self) -> String {
            self.fields
                .values()
                .next()
                .cloned()
                .or_else(|| self.message.clone())
                .unwrap_or_else(|| "The upload was refused.".into())
        }
    }

    pub fn start(
        file: File,
        state: RwSignal<Upload>,
        submit: ServerAction<SubmitJob>,
        preset: NodeRef<html::Select>,
    ) {
        let announced = NewUpload {
            name: file.name(),
            size: file.size() as u64,
            content_type: file.type_(),
        };
        // The size limit is the server's to say; the kind and emptiness are checked here.
        if let Err(errors) = announced.validate(u64::MAX) {
            let message = errors.0.values().next().cloned().unwrap_or_default();
            state.set(Upload::Failed(message));
            return;
        }
        let preset = preset.get_untracked().map(|select| select.value());
        leptos::task::spawn_local(async move {
            let name = announced.name.clone();
            match send(&file, &announced, state).await {
                Ok(input_url) => {
                    submit.dispatch(SubmitJob { input_url, preset });
                    state.set(Upload::Done(name));
                }
                Err(message) => state.set(Upload::Failed(message)),
            }
        });
    }

    /// Announce, send every part, complete: the upload's `input_url`.
    async fn send(
        file: &File,
        announced: &NewUpload,
        state: RwSignal<Upload>,
    ) -> Result<String, String> {
        let body = serde_json::to_string(announced).map_err(|e| e.to_string())?;
        let (status, answer) = request("POST", "/api/uploads", Some(body.into()), None).await?;
        if status != 201 {
            return Err(answer.problem());
        }
        let id = answer.id.clone().unwrap_or_default();
        let part_bytes = answer.part_bytes.unwrap_or(1.0);
        let parts = answer.parts.unwrap_or(0);
        let size = file.size();
        let mut received = answer.received;
        let report = {
            let name = announced.name.clone();
            move |sent: f64| {
                state.set(Upload::Sending {
                    name: name.clone(),
                    sent: sent.min(size),
                    size,
                })
            }
        };
        report(0.0);
        for n in 0..parts {
            let mut tries = 0;
            while !received.contains(&n) {
                let start = f64::from(n) * part_bytes;
                let end = (start + part_bytes).min(size);
                let blob = file
                    .slice_with_f64_and_f64(start, end)
                    .map_err(|_| "The file could not be read.".to_owned())?;
                let path = format!("/api/uploads/{id}/parts/{n}");
                let on_progress: Box<dyn Fn(f64)> = Box::new({
                    let report = report.clone();
                    move |loaded| report(start + loaded)
                });
                match request("PUT", &path, Some(blob.into()), Some(on_progress)).await {
                    Ok((200, answer)) => received = answer.received,
                    Ok((status, answer)) if status < 500 && status != 429 => {
                        return Err(answer.problem())
                    }
                    // A dropped connection or a server that could not store it: wait, ask
                    // what arrived, and go on from there.
                    _ => {
                        tries += 1;
                        if tries >= TRIES {
                            return Err(format!(
                                "The upload stopped: part {} of {parts} could not be sent after {TRIES} tries. Check the connection and drop the file again.",
                                n + 1
                            ));
                        }
                        sleep(500 * 2u32.pow(tries)).await;
                        if let Ok((200, answer)) =
                            request("GET", &format!("/api/uploads/{id}"), None, None).await
                        {
                            received = answer.received;
                        }
                    }
                }
            }
            report(end_of(n, part_bytes, size));
        }
        let (status, answer) =
            request("POST", &format!("/api/uploads/{id}/complete"), None, None).await?;
        match (status, answer.input_url.clone()) {
            (200, Some(url)) => Ok(url),
            _ => Err(answer.problem()),
        }
    }

    fn end_of(n: u32, part_bytes: f64, size: f64) -> f64 {
        ((f64::from(n) + 1.0) * part_bytes).min(size)
    }

    async fn sleep(ms: u32) {
        let (tx, rx) = futures::channel::oneshot::channel::<()>();
        set_timeout(
            move || {
                let _ = tx.send(());
            },
            std::time::Duration::from_millis(ms.into()),
        );
        let _ = rx.await;
    }

    /// One request with XMLHttpRequest (for upload progress): the status and the JSON answer;
    /// `Err` when no answer came (the connection dropped).
    async fn request(
        method: &str,
        path: &str,
        body: Option<JsValue>,
        on_progress: Option<Box<dyn Fn(f64)>>,
    ) -> Result<(u16, Answer), String> {
        let unreachable = || "The server could not be reached.".to_owned();
        let xhr = web_sys::XmlHttpRequest::new().map_err(|_| unreachable())?;
        xhr.open(method, path).map_err(|_| unreachable())?;
        let (tx, rx) = futures::channel::oneshot::channel::<bool>();
        let tx = std::rc::Rc::new(std::cell::RefCell::new(Some(tx)));
        let finish = |ok: bool| {
            let tx = tx.clone();
            Closure::<dyn FnMut()>::new(move || {
                if let Some(tx) = tx.borrow_mut().take() {
                    let _ = tx.send(ok);
                }
            })
        };
        let (loaded, failed) = (finish(true), finish(false));
        xhr.set_onload(Some(loaded.as_ref().unchecked_ref()));
        xhr.set_onerror(Some(failed.as_ref().unchecked_ref()));
        xhr.set_onabort(Some(failed.as_ref().unchecked_ref()));
        let progress = on_progress.map(|report| {
            Closure::<dyn FnMut(web_sys::ProgressEvent)>::new(move |ev: web_sys::ProgressEvent| {
                report(ev.loaded())
            })
        });
        if let (Some(progress), Ok(upload)) = (&progress, xhr.upload()) {
            upload.set_onprogress(Some(progress.as_ref().unchecked_ref()));
        }
        let sent = match &body {
            Some(body) if body.is_string() => {
                let _ = xhr.set_request_header("content-type", "application/json");
                xhr.send_with_opt_str(body.as_string().as_deref())
            }
            Some(body) => {
                let _ = xhr.set_request_header("content-type", "application/octet-stream");
                xhr.send_with_opt_blob(body.dyn_ref::<web_sys::Blob>())
            }
            None => xhr.send(),
        };
        sent.map_err(|_| unreachable())?;
        let ok = rx.await.unwrap_or(false);
        if let Ok(upload) = xhr.upload() {
            upload.set_onprogress(None);
        }
        drop((loaded, failed, progress));
        if !ok {
            return Err(unreachable());
        }
        let status = xhr.status().unwrap_or(0);
        let text = xhr.response_text().ok().flatten().unwrap_or_default();
        Ok((status, serde_json::from_str(&text).unwrap_or_default()))
    }
}

/// On the server nothing is sent: the zone is hidden until the page is hydrated.
#[cfg(not(feature = "hydrate"))]
mod browser {
    use leptos::html;
    use leptos::prelude::*;

    use super::Upload;
    use crate::api::SubmitJob;

    pub enum File {}

    pub fn chosen(_: &leptos::ev::Event) -> Option<File> {
        None
    }

    pub fn dropped(_: &leptos::ev::DragEvent) -> Option<File> {
        None
    }

    pub fn start(
        file: File,
        _: RwSignal<Upload>,
        _: ServerAction<SubmitJob>,
        _: NodeRef<html::Select>,
    ) {
        match file {}
    }
}
