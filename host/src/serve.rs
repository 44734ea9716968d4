//! `serve`: export records as JSON lines in, one result line per record out.
//!
//! Records are numbered as they are read, run by a bounded pool of workers,
//! and written in input order. Each record's result is one JSON object:
//!
//! ```json
//! {"record": {...}, "handledBy": [{"name": "OAuth 2.0", "version": "1.0.0"}]}
//! {"record": {...}, "error": {"kind": "authorization", "message": "..."}, "handledBy": [...]}
//! ```
//!
//! A failed record carries the input record unchanged (`null` when the line
//! was not JSON or too long to read). One bad record never stops the stream.
//!
//! A record that runs past the deadline gets a `timeout` line in its place
//! and the stream goes on; the worker it was stuck in is replaced, and its
//! late result is dropped, so no record ever gets two lines.
//!
//! Each record is given the chain of the moment it is dispatched, in input
//! order: after a hot swap, every later record runs on the new chain and
//! every earlier one on the old, so the output splits cleanly in two.
//!
//! When the stop flag is raised (SIGTERM, Ctrl-C), no further line is read;
//! the records already read are finished and written, then [`serve`] returns.

use crate::chain::Chain;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, Read, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, SyncSender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The default per-record deadline.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(60);

/// The default limit of one input line, in bytes.
pub const DEFAULT_MAX_LINE_BYTES: usize = 1 << 20;

/// How `serve` runs.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Records handled at once.
    pub workers: usize,
    /// How long one record may take.
    pub deadline: Duration,
    /// The longest input line accepted.
    pub max_line_bytes: usize,
}

/// Where `serve` gets the chain for each record.
///
/// A record runs entirely on the chain it got when it started; a hot swap
/// replaces what later records get.
pub trait ChainSource: Send + Sync {
    /// The chain the next record starts on, or the reason there is none.
    fn current(&self) -> Result<Arc<Chain>, String>;
}

impl ChainSource for Arc<Chain> {
    fn current(&self) -> Result<Arc<Chain>, String> {
        Ok(self.clone())
    }
}

/// Counts of one `serve` run.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Summary {
    /// Records read (each has one output line).
    pub records: u64,
    /// Records whose line carries an error.
    pub failures: u64,
    /// Of the failures, those that ran past the deadline.
    pub timeouts: u64,
}

/// One input line.
enum Line {
    Text(String),
    TooLong(usize),
    NotUtf8,
}

struct Job {
    seq: u64,
    line: Line,
    /// The chain, taken when the record was dispatched: records take
    /// chains in input order, so a swap splits the output in two.
    chain: Result<Arc<Chain>, String>,
}

struct Done {
    seq: u64,
    failed: bool,
    line: String,
}

/// Shared between the dispatcher, the workers and the writer.
struct Shared {
    /// Start time and input text of each record a worker is running.
    started: Mutex<HashMap<u64, (Instant, Arc<str>)>>,
    /// How many records were read, once reading has ended.
    total: AtomicU64,
    /// Workers that should be running; a worker beyond this count exits.
    wanted_workers: AtomicUsize,
    running_workers: AtomicUsize,
}

/// Runs the stream from `input` to `output` until end of input or `stop`.
///
/// # Errors
///
/// Only when `output` cannot be written (for example a closed pipe); then
/// the results not yet written are lost to the reader anyway.
pub fn serve(
    source: Arc<dyn ChainSource>,
    input: impl BufRead + Send + 'static,
    output: impl Write + Send + 'static,
    options: &ServeOptions,
    stop: Arc<AtomicBool>,
) -> std::io::Result<Summary> {
    let workers = options.workers.max(1);
    let shared = Arc::new(Shared {
        started: Mutex::new(HashMap::new()),
        total: AtomicU64::new(u64::MAX),
        wanted_workers: AtomicUsize::new(workers),
        running_workers: AtomicUsize::new(0),
    });

    // Reader: lines into a small buffer; blocks when the pool is busy, so
    // memory stays bounded however fast the input is.
    let (line_tx, line_rx) = mpsc::sync_channel::<Line>(workers * 4);
    let max_line = options.max_line_bytes;
    std::thread::spawn(move || read_lines(input, max_line, &line_tx));

    let (job_tx, job_rx) = mpsc::sync_channel::<Job>(workers * 2);
    let job_rx = Arc::new(Mutex::new(job_rx));
    let (done_tx, done_rx) = mpsc::channel::<Done>();
    for _ in 0..workers {
        spawn_worker(&job_rx, &done_tx, &shared);
    }

    let writer = {
        let shared = shared.clone();
        let job_rx = job_rx.clone();
        let done_tx = done_tx.clone();
        let deadline = options.deadline;
        std::thread::spawn(move || {
            write_in_order(output, &done_rx, &shared, deadline, || {
                // A worker is stuck past the deadline: add one so the
                // stream keeps its pace.
                shared.wanted_workers.fetch_add(1, Ordering::SeqCst);
                spawn_worker(&job_rx, &done_tx, &shared);
            })
        })
    };
    drop(done_tx);

    let mut seq = 0;
    loop {
        let line = if stop.load(Ordering::SeqCst) {
            // Stopping: finish what was already read, read nothing more.
            match line_rx.try_recv() {
                Ok(line) => line,
                Err(_) => break,
            }
        } else {
            match line_rx.recv_timeout(Duration::from_millis(50)) {
                Ok(line) => line,
                Err(RecvTimeoutError::Timeout) => continue,
                Err(RecvTimeoutError::Disconnected) => break,
            }
        };
        let chain = source.current();
        if job_tx.send(Job { seq, line, chain }).is_err() {
            break;
        }
        seq += 1;
    }
    drop(job_tx);
    shared.total.store(seq, Ordering::SeqCst);
    let mut summary = writer.join().expect("the writer thread does not panic")?;
    summary.records = seq;
    Ok(summary)
}

fn read_lines(mut input: impl BufRead, max: usize, lines: &SyncSender<Line>) {
    let mut buf = Vec::new();
    loop {
        buf.clear();
        let read = match input
            .by_ref()
            .take(max as u64 + 1)
            .read_until(b'\n', &mut buf)
        {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let line = if buf.last() != Some(&b'\n') && read > max {
            // Skip the rest of the oversized line.
            let mut skipped = read;
            loop {
                let mut rest = Vec::new();
                match input.by_ref().take(1 << 16).read_until(b'\n', &mut rest) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => skipped += n,
                }
                if rest.last() == Some(&b'\n') {
                    break;
                }
            }
            Line::TooLong(skipped)
        } else {
            while matches!(buf.last(), Some(b'\n' | b'\r')) {
                buf.pop();
            }
            if buf.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            match String::from_utf8(std::mem::take(&mut buf)) {
                Ok(text) => Line::Text(text),
                Err(_) => Line::NotUtf8,
            }
        };
        if lines.send(line).is_err() {
            return;
        }
    }
}

fn spawn_worker(jobs: &Arc<Mutex<Receiver<Job>>>, done: &Sender<Done>, shared: &Arc<Shared>) {
    let (jobs, done, shared) = (jobs.clone(), done.clone(), shared.clone());
    shared.running_workers.fetch_add(1, Ordering::SeqCst);
    std::thread::spawn(move || {
        loop {
            let job = match jobs.lock() {
                Ok(rx) => rx.recv(),
                Err(_) => break,
            };
            let Ok(job) = job else { break };
            let (failed, line) = match job.line {
                Line::Text(text) => {
                    let text: Arc<str> = text.into();
                    shared
                        .started
                        .lock()
                        .unwrap()
                        .insert(job.seq, (Instant::now(), text.clone()));
                    handle(job.chain, &text)
                }
                Line::TooLong(bytes) => failure(
                    Value::Null,
                    &[],
                    "invalid_record",
                    &format!("the line has {bytes} bytes, more than the limit"),
                ),
                Line::NotUtf8 => {
                    failure(Value::Null, &[], "invalid_record", "the line is not UTF-8")
                }
            };
            shared.started.lock().unwrap().remove(&job.seq);
            if done
                .send(Done {
                    seq: job.seq,
                    failed,
                    line,
                })
                .is_err()
            {
                break;
            }
            // Retire a replacement worker once the stuck one is back.
            let running = shared.running_workers.load(Ordering::SeqCst);
            if running > shared.wanted_workers.load(Ordering::SeqCst)
                && shared
                    .running_workers
                    .compare_exchange(running, running - 1, Ordering::SeqCst, Ordering::SeqCst)
                    .is_ok()
            {
                return;
            }
        }
        shared.running_workers.fetch_sub(1, Ordering::SeqCst);
    });
}

/// Runs one record and makes its output line.
///
/// The text is parsed once on success (inside the chain); the input record
/// a failure line carries is parsed again only then.
fn handle(chain: Result<Arc<Chain>, String>, text: &str) -> (bool, String) {
    let input = || -> Result<Value, (bool, String)> {
        serde_json::from_str(text).map_err(|err| {
            failure(
                Value::Null,
                &[],
                "invalid_record",
                &format!("not valid JSON ({err})"),
            )
        })
    };
    let chain = match chain {
        Ok(chain) => chain,
        Err(cause) => {
            return match input() {
                Ok(input) => failure(input, &[], "plugin", &cause),
                Err(line) => line,
            }
        }
    };
    let mut handled_by = Vec::new();
    match chain.run_traced(text, &mut handled_by) {
        Ok((record, _context)) => (false, success_line(&record, &handled_by)),
        Err(err) => match input() {
            Ok(input) => failure(input, &handled_by, error_kind(&err), &err.to_string()),
            Err(line) => line,
        },
    }
}

/// `{"record": ..., "handledBy": [...]}`, written straight from the record
/// rather than through a new JSON tree around it.
fn success_line(record: &Value, handled_by: &[(String, String)]) -> String {
    let mut line = String::with_capacity(1024);
    line.push_str("{\"record\":");
    line.push_str(&record.to_string());
    line.push_str(",\"handledBy\":");
    line.push_str(&handled(handled_by).to_string());
    line.push('}');
    line
}

fn failure(
    record: Value,
    handled_by: &[(String, String)],
    kind: &str,
    message: &str,
) -> (bool, String) {
    let line = json!({
        "record": record,
        "error": {"kind": kind, "message": message},
        "handledBy": handled(handled_by),
    });
    (true, line.to_string())
}

fn handled(handled_by: &[(String, String)]) -> Value {
    handled_by
        .iter()
        .map(|(name, version)| json!({"name": name, "version": version}))
        .collect()
}

/// The `kind` of an error in an output line.
pub fn error_kind(err: &crate::Error) -> &'static str {
    match err {
        crate::Error::Posthandler { error, .. } => error.kind().as_str(),
        crate::Error::Record(_) => "invalid_record",
        crate::Error::MissingPlugin { .. } => "plugin",
        _ => "configuration",
    }
}

fn write_in_order(
    output: impl Write,
    done: &Receiver<Done>,
    shared: &Shared,
    deadline: Duration,
    mut on_timeout: impl FnMut(),
) -> std::io::Result<Summary> {
    let mut out = std::io::BufWriter::new(output);
    let mut summary = Summary::default();
    let mut pending: BTreeMap<u64, Done> = BTreeMap::new();
    let mut timed_out: Vec<u64> = Vec::new();
    let mut next = 0u64;
    loop {
        // Write every result that is next in line.
        while let Some(result) = pending.remove(&next) {
            if result.failed {
                summary.failures += 1;
            }
            crate::progress::PROGRESS.record_written(result.failed);
            out.write_all(result.line.as_bytes())?;
            out.write_all(b"\n")?;
            next += 1;
        }
        timed_out.retain(|seq| *seq >= next);
        if next == shared.total.load(Ordering::SeqCst) {
            // Every record read has its line; a worker still stuck in a
            // timed-out record is not waited for.
            break;
        }
        // Nothing more is ready: what was written goes out now, so a slow
        // stream's lines are not held back in the buffer.
        let result = match done.try_recv() {
            Ok(result) => Ok(result),
            Err(mpsc::TryRecvError::Disconnected) => Err(RecvTimeoutError::Disconnected),
            Err(mpsc::TryRecvError::Empty) => {
                out.flush()?;
                done.recv_timeout(Duration::from_millis(if pending.is_empty() {
                    50
                } else {
                    5
                }))
            }
        };
        match result {
            Ok(result) => {
                if result.seq >= next && !timed_out.contains(&result.seq) {
                    pending.insert(result.seq, result);
                }
                // Late results of records already reported as timed out are
                // dropped here.
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => break,
            Err(RecvTimeoutError::Timeout) => {}
        }
        out.flush()?;
        // Report records stuck past the deadline, in any position.
        let overdue: Vec<(u64, Arc<str>)> = {
            let mut started = shared.started.lock().unwrap();
            let seqs: Vec<u64> = started
                .iter()
                .filter(|(_, (at, _))| at.elapsed() > deadline)
                .map(|(seq, _)| *seq)
                .collect();
            seqs.into_iter()
                .filter_map(|seq| started.remove(&seq).map(|(_, text)| (seq, text)))
                .collect()
        };
        for (seq, text) in overdue {
            let (failed, line) = failure(
                serde_json::from_str(&text).unwrap_or(Value::Null),
                &[],
                "timeout",
                &format!(
                    "the record took longer than the deadline of {} ms",
                    deadline.as_millis()
                ),
            );
            summary.timeouts += 1;
            pending.insert(seq, Done { seq, failed, line });
            timed_out.push(seq);
            on_timeout();
        }
    }
    out.flush()?;
    Ok(summary)
}
