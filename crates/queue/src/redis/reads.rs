//! Reads: one job, a page of jobs by id, the queue depth. None needs a script but the depth
//! (which must count from one instant); a job's hash is read whole by one `HGETALL`.

use super::{RedisQueue, keys};
use crate::error::{QueueError, Result};
use crate::memory::as_read;
use crate::model::{Depth, Job, JobId, JobState, ListFilter, Page};
use jiff::Timestamp;
use std::collections::HashMap;

/// Ids read per round of a list.
const LIST_CHUNK: usize = 200;

/// These jobs (those that exist) with the revision each was read at, in the order asked.
pub(super) async fn fetch(queue: &RedisQueue, ids: &[JobId]) -> Result<Vec<(Job, String)>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let mut pipe = redis::pipe();
    for id in ids {
        pipe.cmd("HGETALL").arg(keys::job(&queue.prefix, id));
    }
    let hashes: Vec<HashMap<String, String>> = pipe.query_async(&mut queue.connection()).await?;
    let mut jobs = Vec::with_capacity(hashes.len());
    for hash in hashes {
        if let Some(job) = keys::decode(hash)? {
            jobs.push(job);
        }
    }
    Ok(jobs)
}

pub(super) async fn get(queue: &RedisQueue, id: &JobId, now: Timestamp) -> Result<Option<Job>> {
    let mut jobs = fetch(queue, std::slice::from_ref(id)).await?;
    Ok(jobs.pop().map(|(job, _)| as_read(job, now)))
}

/// A page by id: walks the id index from the cursor, reading jobs a chunk at a time and
/// keeping those the filter (state as read at `now`) lets through.
pub(super) async fn list(queue: &RedisQueue, filter: &ListFilter, now: Timestamp) -> Result<Page> {
    let size = filter.page_size();
    let mut items = Vec::with_capacity(size + 1);
    let mut from = filter.after.as_ref().map_or_else(|| "-".to_owned(), |after| format!("({after}"));
    'pages: loop {
        let ids: Vec<String> = redis::cmd("ZRANGEBYLEX")
            .arg(keys::ids(&queue.prefix))
            .arg(&from)
            .arg("+")
            .arg("LIMIT")
            .arg(0)
            .arg(LIST_CHUNK)
            .query_async(&mut queue.connection())
            .await?;
        let Some(last) = ids.last() else { break };
        from = format!("({last}");
        let ids: Vec<JobId> = ids.into_iter().map(JobId::new).collect();
        for (job, _) in fetch(queue, &ids).await? {
            let job = as_read(job, now);
            let keep = filter.tenant_id.as_ref().is_none_or(|t| *t == job.tenant_id)
                && filter.kind.as_ref().is_none_or(|k| *k == job.kind)
                && filter.state.is_none_or(|s| s == job.state);
            if keep {
                items.push(job);
                if items.len() > size {
                    break 'pages;
                }
            }
        }
        if ids.len() < LIST_CHUNK {
            break;
        }
    }
    let next_cursor = (items.len() > size).then(|| {
        items.truncate(size);
        items[size - 1].id.clone()
    });
    Ok(Page { items, next_cursor })
}

pub(super) async fn depth(queue: &RedisQueue, now: Timestamp) -> Result<Vec<Depth>> {
    let flat: Vec<String> = queue.run(&queue.scripts.depth, &[keys::micros(now)]).await?;
    let mut depth = Vec::with_capacity(flat.len() / 3);
    for row in flat.chunks_exact(3) {
        let state = JobState::parse(&row[1]).ok_or_else(|| QueueError::Corrupt(format!("job state {:?}", row[1])))?;
        let jobs = row[2].parse().map_err(|_| QueueError::Corrupt(format!("job count {:?}", row[2])))?;
        depth.push(Depth { kind: row[0].clone(), state, jobs });
    }
    depth.sort();
    Ok(depth)
}
