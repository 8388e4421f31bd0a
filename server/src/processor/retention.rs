//! The processor's share of the clean-up: jobs finished before the retention period, their
//! rows and their output files.

use std::time::Duration;

use super::Processor;
use crate::storage::Key;

impl Processor {
    /// Delete up to `batch` jobs finished more than `older_than` ago, and their outputs;
    /// returns how many.
    pub async fn delete_old_outputs(
        &self,
        older_than: Duration,
        batch: i64,
    ) -> Result<u64, sqlx::Error> {
        let gone = sqlx::query!(
            r#"delete from processor_jobs where id in (
                 select id from processor_jobs
                 where finished_at < now() - make_interval(secs => $1)
                 limit $2)
             returning output->>'url' as "url""#,
            older_than.as_secs_f64(),
            batch,
        )
        .fetch_all(self.pool())
        .await?;
        for url in gone.iter().filter_map(|row| row.url.as_deref()) {
            // Only a file name of ours, never a path out of the outputs folder.
            let Some(name) = url
                .rsplit('/')
                .next()
                .filter(|n| super::api::is_output_name(n))
            else {
                continue;
            };
            if let Err(err) = self.inner.storage.delete(&Key::output(name)).await {
                tracing::warn!(error = %err, file = name, "could not delete an old output");
            }
        }
        Ok(gone.len() as u64)
    }
}
