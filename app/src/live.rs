//! The browser's side of `/api/events`: an EventSource that feeds the job store and reports
//! its state.

/// What the live indicator shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
// Only the browser leaves `Connecting`.
#[cfg_attr(not(feature = "hydrate"), allow(dead_code))]
pub enum LiveState {
    Connecting,
    Live,
    Reconnecting,
    Offline,
}

impl LiveState {
    pub fn as_str(self) -> &'static str {
        match self {
            LiveState::Connecting => "connecting",
            LiveState::Live => "live",
            LiveState::Reconnecting => "reconnecting",
            LiveState::Offline => "offline",
        }
    }

    /// After an `error` event. A stream the browser has closed (the server refused it, or
    /// answered something that is not a stream) is not retried by the browser: the state is
    /// Offline and the page reopens it after a pause. Otherwise the browser is reconnecting by
    /// itself (sending the last event id): Reconnecting, or Offline when it knows it has no
    /// network.
    #[cfg_attr(not(feature = "hydrate"), allow(dead_code))]
    pub fn after_error(stream_closed: bool, online: bool) -> AfterError {
        match (stream_closed, online) {
            (true, _) => AfterError {
                state: LiveState::Offline,
                reopen: true,
            },
            (false, true) => AfterError {
                state: LiveState::Reconnecting,
                reopen: false,
            },
            (false, false) => AfterError {
                state: LiveState::Offline,
                reopen: false,
            },
        }
    }
}

/// What an `error` event leads to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(not(feature = "hydrate"), allow(dead_code))]
pub struct AfterError {
    pub state: LiveState,
    /// Open a new stream after a pause (the browser will not).
    pub reopen: bool,
}

/// Where a stream opens: from the store's position, so a reopened stream resumes where the
/// page is, or from nothing (the first event is then a reset).
#[cfg_attr(not(feature = "hydrate"), allow(dead_code))]
pub fn events_url(position: Option<reeltime::ChangePosition>) -> String {
    match position {
        Some(position) => format!("/api/events?after={position}"),
        None => "/api/events".to_owned(),
    }
}

#[cfg(feature = "hydrate")]
pub use browser::connect;

/// The EventSource itself (browser only).
#[cfg(feature = "hydrate")]
mod browser {
    use std::cell::RefCell;
    use std::rc::Rc;

    use leptos::prelude::*;
    use reeltime::{ChangeOp, ChangePosition, Job, JobPage};
    use wasm_bindgen::closure::Closure;
    use wasm_bindgen::JsCast;
    use web_sys::{EventSource, MessageEvent};

    use super::{events_url, LiveState};
    use crate::store::JobStore;

    type Listener = Closure<dyn FnMut(MessageEvent)>;

    struct Inner {
        source: Option<EventSource>,
        listeners: Vec<(&'static str, Listener)>,
        retry: Option<leptos::prelude::TimeoutHandle>,
        closed: bool,
    }

    /// An open subscription; dropping it closes the stream.
    pub struct Live(Rc<RefCell<Inner>>);

    impl Drop for Live {
        fn drop(&mut self) {
            let mut inner = self.0.borrow_mut();
            inner.closed = true;
            if let Some(source) = inner.source.take() {
                source.close();
            }
            if let Some(retry) = inner.retry.take() {
                retry.clear();
            }
            inner.listeners.clear();
        }
    }

    /// Subscribe from the store's position; the browser resumes by itself after a network blip
    /// (sending the last event id), and a stream the server refused is reopened after a pause.
    pub fn connect(store: JobStore, state: RwSignal<LiveState>) -> Live {
        let inner = Rc::new(RefCell::new(Inner {
            source: None,
            listeners: Vec::new(),
            retry: None,
            closed: false,
        }));
        open(inner.clone(), store, state);
        Live(inner)
    }

    fn open(inner: Rc<RefCell<Inner>>, store: JobStore, state: RwSignal<LiveState>) {
        let Ok(source) = EventSource::new(&events_url(store.position())) else {
            state.set(LiveState::Offline);
            return;
        };
        let mut listeners: Vec<(&'static str, Listener)> = Vec::new();
        for (name, op) in [
            ("insert", ChangeOp::Insert),
            ("update", ChangeOp::Update),
            ("delete", ChangeOp::Delete),
        ] {
            listeners.push((
                name,
                Closure::new(move |event: MessageEvent| {
                    let (Some(data), Ok(position)) = (
                        event.data().as_string(),
                        event.last_event_id().parse::<ChangePosition>(),
                    ) else {
                        return;
                    };
                    if let Ok(job) = serde_json::from_str::<Job>(&data) {
                        store.apply(op, job, position);
                    }
                }),
            ));
        }
        listeners.push((
            "reset",
            Closure::new(move |event: MessageEvent| {
                if let Some(Ok(page)) = event
                    .data()
                    .as_string()
                    .map(|d| serde_json::from_str::<JobPage>(&d))
                {
                    store.reset(page);
                }
            }),
        ));
        listeners.push((
            "open",
            Closure::new(move |_: MessageEvent| state.set(LiveState::Live)),
        ));
        let weak = Rc::downgrade(&inner);
        listeners.push((
            "error",
            Closure::new(move |_: MessageEvent| {
                let Some(inner) = weak.upgrade() else { return };
                let online = web_sys::window().is_none_or(|w| w.navigator().on_line());
                let ready_state = inner.borrow().source.as_ref().map(EventSource::ready_state);
                let after =
                    LiveState::after_error(ready_state == Some(EventSource::CLOSED), online);
                state.set(after.state);
                if after.reopen {
                    let again = inner.clone();
                    let handle = set_timeout_with_handle(
                        move || {
                            if !again.borrow().closed {
                                open(again.clone(), store, state);
                            }
                        },
                        std::time::Duration::from_secs(3),
                    )
                    .ok();
                    inner.borrow_mut().retry = handle;
                }
            }),
        ));
        for (name, listener) in &listeners {
            let _ =
                source.add_event_listener_with_callback(name, listener.as_ref().unchecked_ref());
        }
        let mut inner = inner.borrow_mut();
        if let Some(old) = inner.source.replace(source) {
            old.close();
        }
        inner.listeners = listeners;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reeltime::ChangePosition;

    #[test]
    fn a_refused_stream_is_offline_and_reopened() {
        for online in [true, false] {
            assert_eq!(
                LiveState::after_error(true, online),
                AfterError {
                    state: LiveState::Offline,
                    reopen: true
                }
            );
        }
    }

    #[test]
    fn a_dropped_stream_is_reconnecting_by_itself_or_offline_without_a_network() {
        assert_eq!(
            LiveState::after_error(false, true),
            AfterError {
                state: LiveState::Reconnecting,
                reopen: false
            }
        );
        assert_eq!(
            LiveState::after_error(false, false),
            AfterError {
                state: LiveState::Offline,
                reopen: false
            }
        );
    }

    #[test]
    fn a_reopened_stream_resumes_from_the_pages_position() {
        let position = ChangePosition { tx: 812, seq: 4 };
        assert_eq!(events_url(Some(position)), "/api/events?after=812.4");
        assert_eq!(events_url(None), "/api/events");
    }
}
