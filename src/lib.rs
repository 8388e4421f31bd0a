//! Reeltime's domain core.
//!
//! Framework-free: no web framework, no database driver. Everything here compiles for the
//! server and for the browser (wasm32), so the dashboard validates input with exactly the
//! rules the server enforces.

pub mod access;
pub mod change;
pub mod filter;
#[doc(hidden)]
pub mod fuzzing;
pub mod ittybit;
pub mod job;
pub mod media_url;
pub mod operate;
pub mod page;
pub mod signature;
pub mod submission;
pub mod upload;

pub use access::{Role, TokenScope, Viewer};
pub use change::{ChangeOp, ChangePosition, Shown, TxSnapshot};
pub use filter::{FilterError, JobFilter};
pub use ittybit::{
    normalize_webhook, CreateJobRequest, IttybitError, IttybitFile, IttybitJob, IttybitTask,
    Normalized, PayloadError,
};
pub use job::{Job, JobId, JobKind, JobStatus, OutputFacts, Preset};
pub use media_url::{MediaUrl, MediaUrlError, MAX_MEDIA_URL_LEN};
pub use operate::{Delivery, JobAction, JobEvent};
pub use page::{
    format_bytes, format_duration_ms, is_linkable, relative_time, shorten_middle, JobPage,
    PageCursor, PageLimit,
};
pub use signature::{SignatureError, SIGNATURE_HEADER};
pub use submission::{FieldErrors, JobSubmission, NewJob};
