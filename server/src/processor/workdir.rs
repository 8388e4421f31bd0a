//! One work directory per attempt at a job: `<processor dir>/work/<job id>.<lease owner>`.
//!
//! It holds the downloaded input and ffmpeg's partial output and nothing else, so a reference
//! inside one input can find no other job's file there, and two attempts at the same job (a
//! worker that lost its lease and the one that took it) never share a path. It is removed when
//! the attempt ends, however it ends; what a killed server left behind is removed at start-up
//! ([`sweep`]) or when the job is claimed again ([`WorkDir::create`]).

use std::collections::HashSet;
use std::io;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use uuid::Uuid;

use super::confine::RunAs;

/// An attempt's directory, removed with everything in it when dropped.
#[derive(Debug)]
pub struct WorkDir {
    path: PathBuf,
}

fn name(job_id: &str, owner: Uuid) -> String {
    format!("{job_id}.{}", owner.simple())
}

impl WorkDir {
    /// Make the directory for `owner`'s attempt at `job_id` under `root`, readable only by
    /// the tools' user, and remove what earlier attempts at the job left.
    pub async fn create(
        root: &Path,
        job_id: &str,
        owner: Uuid,
        run_as: Option<RunAs>,
    ) -> io::Result<WorkDir> {
        remove_earlier_attempts(root, job_id, owner).await;
        let path = root.join(name(job_id, owner));
        tokio::fs::create_dir(&path).await?;
        let dir = WorkDir { path };
        tokio::fs::set_permissions(&dir.path, std::fs::Permissions::from_mode(0o700)).await?;
        if let Some(user) = run_as {
            hand_over(&dir.path, user)?;
        }
        Ok(dir)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn join(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// Give `path` to the tools' user, so ffmpeg may read the input and write its output there.
pub fn hand_over(path: &Path, user: RunAs) -> io::Result<()> {
    std::os::unix::fs::chown(path, Some(user.uid), Some(user.gid))
}

/// Remove the directories of attempts at `job_id` other than `owner`'s: claiming a job means
/// their leases ran out.
async fn remove_earlier_attempts(root: &Path, job_id: &str, owner: Uuid) {
    let Ok(mut entries) = tokio::fs::read_dir(root).await else {
        return;
    };
    let prefix = format!("{job_id}.");
    let ours = name(job_id, owner);
    while let Ok(Some(entry)) = entries.next_entry().await {
        let file_name = entry.file_name();
        let Some(file_name) = file_name.to_str() else {
            continue;
        };
        if file_name.starts_with(&prefix) && file_name != ours {
            tracing::info!(
                dir = file_name,
                "removing an earlier attempt's work directory"
            );
            let _ = tokio::fs::remove_dir_all(entry.path()).await;
        }
    }
}

/// At start-up: remove everything in the work directory but the directories of attempts whose
/// lease still runs (another process sharing the data directory may be using them), and the
/// partial outputs older versions kept among the outputs. Returns how many entries went.
pub async fn sweep(work: &Path, outputs: Option<&Path>, live: &[(String, Uuid)]) -> usize {
    let keep: HashSet<String> = live.iter().map(|(id, owner)| name(id, *owner)).collect();
    let mut removed = 0;
    if let Ok(mut entries) = tokio::fs::read_dir(work).await {
        while let Ok(Some(entry)) = entries.next_entry().await {
            if entry.file_name().to_str().is_some_and(|n| keep.contains(n)) {
                continue;
            }
            let path = entry.path();
            let gone = match entry.file_type().await {
                Ok(kind) if kind.is_dir() => tokio::fs::remove_dir_all(&path).await,
                _ => tokio::fs::remove_file(&path).await,
            };
            removed += usize::from(gone.is_ok());
        }
    }
    let listed = match outputs {
        Some(outputs) => tokio::fs::read_dir(outputs).await.ok(),
        None => None,
    };
    if let Some(mut entries) = listed {
        while let Ok(Some(entry)) = entries.next_entry().await {
            // `.part.`: older versions' partial outputs; `#`: the local store's staging
            // files (`<name>#<n>`) of an upload a crash cut short.
            let partial = entry
                .file_name()
                .to_str()
                .is_some_and(|n| n.contains(".part.") || n.contains('#'));
            if partial && tokio::fs::remove_file(entry.path()).await.is_ok() {
                removed += 1;
            }
        }
    }
    if removed > 0 {
        tracing::info!(
            removed,
            "removed what an earlier run left in the work directory"
        );
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("reeltime-wd-{}", Uuid::new_v4().simple()));
        std::fs::create_dir_all(dir.join("work")).unwrap();
        std::fs::create_dir_all(dir.join("outputs")).unwrap();
        dir
    }

    #[tokio::test]
    async fn an_attempt_gets_its_own_directory_gone_when_it_ends() {
        let root = scratch();
        let work = root.join("work");
        let (first, second) = (Uuid::new_v4(), Uuid::new_v4());
        let dir = WorkDir::create(&work, "job_a", first, None).await.unwrap();
        std::fs::write(dir.join("input"), b"x").unwrap();
        let mode = std::fs::metadata(dir.path()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        let other = WorkDir::create(&work, "job_b", second, None).await.unwrap();
        // A second attempt at job_a: the first one's lease ran out, its directory goes.
        let again = WorkDir::create(&work, "job_a", second, None).await.unwrap();
        assert!(!dir.path().exists(), "the earlier attempt's files are gone");
        assert!(other.path().exists(), "another job's are not");
        let path = again.path().to_owned();
        drop(again);
        assert!(!path.exists());
        std::mem::forget(dir);
        drop(other);
        let _ = std::fs::remove_dir_all(root);
    }

    #[tokio::test]
    async fn start_up_keeps_only_live_attempts() {
        let root = scratch();
        let (work, outputs) = (root.join("work"), root.join("outputs"));
        let live = Uuid::new_v4();
        std::fs::create_dir(work.join(name("job_live", live))).unwrap();
        std::fs::create_dir(work.join(name("job_dead", Uuid::new_v4()))).unwrap();
        std::fs::write(work.join("job_old.input"), b"x").unwrap();
        std::fs::write(outputs.join("job_x.part.mp4"), b"x").unwrap();
        std::fs::write(outputs.join("job_y.mp4"), b"x").unwrap();
        std::fs::write(outputs.join("job_z.mp4#3"), b"x").unwrap();
        let removed = sweep(&work, Some(&outputs), &[("job_live".into(), live)]).await;
        assert_eq!(removed, 4);
        let left = |dir: &Path| {
            let mut names: Vec<String> = std::fs::read_dir(dir)
                .unwrap()
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .collect();
            names.sort();
            names
        };
        assert_eq!(left(&work), [name("job_live", live)]);
        assert_eq!(left(&outputs), ["job_y.mp4"]);
        let _ = std::fs::remove_dir_all(root);
    }
}
