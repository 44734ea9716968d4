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
//! the records already dispatched are finished and written, then [`serve`]
//! returns.
//!
//! # Threads and hand-offs
//!
//! One reader thread splits every complete line out of each buffer it reads
//! and dispatches them together; workers take records one at a time from a
//! shared queue and put results into a shared buffer; the thread that called
//! [`serve`] writes that buffer out in bulk, in order, and watches the
//! deadlines and the stop flag. All of them meet at one mutex. A thread is
//! woken only when it sleeps and what it waits for has come (a worker for a
//! record, the writer for the next result in line, the reader for room), so
//! a busy stream passes records without a wake-up each. Records dispatched
//! and not yet written are bounded in count and bytes, so memory stays
//! bounded however fast the input is.

use crate::chain::Chain;
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::io::{BufRead, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// The default per-record deadline.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(60);

/// The default limit of one input line, in bytes.
pub const DEFAULT_MAX_LINE_BYTES: usize = 1 << 20;

/// Records dispatched and not yet written, per worker, at most.
const IN_FLIGHT_PER_WORKER: u64 = 128;

/// Input bytes of the records dispatched and not yet written, at most (one
/// record is always let in, however long).
const IN_FLIGHT_BYTES: usize = 16 << 20;

/// How often the writer looks at the stop flag when nothing else wakes it.
const STOP_POLL: Duration = Duration::from_millis(50);

/// While records are running, how long the writer sleeps at most: results
/// that come in the meantime are written together, and no line waits
/// longer than this for another record to finish.
const BUSY_POLL: Duration = Duration::from_millis(1);

/// Results that wake the writer even while more are coming.
const WRITE_BATCH: usize = 32;

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
    let records = Records {
        current: move || source.current(),
        run: handle,
    };
    stream(Arc::new(records), input, output, options, &stop)
}

/// What the stream does with each record: [`serve`] runs the chain; the
/// tests below run stand-ins that are slow or stuck on purpose.
struct Records<F, R> {
    /// The chain for records dispatched now.
    current: F,
    /// One record's output line on that chain, and whether it failed.
    run: R,
}

/// One input line.
enum Line {
    Text(String),
    /// Longer than the limit: its length without the line end, and the limit.
    TooLong {
        length: usize,
        limit: usize,
    },
    NotUtf8,
}

struct Job<C> {
    seq: u64,
    line: Line,
    /// Input bytes, for the in-flight bound.
    bytes: usize,
    /// The chain, taken when the record was dispatched: records take
    /// chains in input order, so a swap splits the output in two.
    chain: C,
}

struct Done {
    seq: u64,
    failed: bool,
    bytes: usize,
    line: String,
}

/// A record a worker is running.
struct Running {
    seq: u64,
    since: Instant,
    bytes: usize,
    /// The input, for the failure line if it times out.
    text: Arc<String>,
}

/// Everything the reader, the workers and the writer share, behind one
/// mutex.
struct State<C> {
    jobs: VecDeque<Job<C>>,
    running: Vec<Running>,
    /// Results not yet taken by the writer, in any order.
    results: Vec<Done>,
    /// Records dispatched so far: the next record's number.
    dispatched: u64,
    /// Records written so far: the number of the one the writer waits for.
    written: u64,
    /// Input bytes of the records dispatched and not written.
    in_flight_bytes: usize,
    /// No record is dispatched any more (end of input, stop, or a failed
    /// output); workers leave once the queue is empty.
    closed: bool,
    /// Whether `results` holds the one numbered `written`.
    next_ready: bool,
    idle_workers: usize,
    reader_waiting: bool,
    writer_waiting: bool,
    /// Whether the writer's sleep is the short one of [`BUSY_POLL`].
    writer_polling: bool,
}

struct Shared<C> {
    state: Mutex<State<C>>,
    /// Signalled for a sleeping worker when a record is queued.
    work: Condvar,
    /// Signalled for the sleeping reader when records have been written.
    room: Condvar,
    /// Signalled for the sleeping writer when the result it waits for came.
    ready: Condvar,
    max_in_flight: u64,
}

impl<C> Shared<C> {
    fn lock(&self) -> MutexGuard<'_, State<C>> {
        // No thread panics while holding the lock; records run outside it.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Whether the reader may dispatch one more record.
    fn has_room(&self, state: &State<C>) -> bool {
        let in_flight = state.dispatched - state.written;
        in_flight == 0
            || (in_flight < self.max_in_flight && state.in_flight_bytes < IN_FLIGHT_BYTES)
    }

    /// Whether enough was written to wake the reader: half the bound, so
    /// that it dispatches a batch rather than a record per wake-up.
    fn has_half_room(&self, state: &State<C>) -> bool {
        state.dispatched - state.written <= self.max_in_flight / 2
            && state.in_flight_bytes <= IN_FLIGHT_BYTES / 2
    }
}

fn stream<C, F, R>(
    records: Arc<Records<F, R>>,
    input: impl BufRead + Send + 'static,
    output: impl Write,
    options: &ServeOptions,
    stop: &AtomicBool,
) -> std::io::Result<Summary>
where
    C: Clone + Send + 'static,
    F: Fn() -> C + Send + Sync + 'static,
    R: Fn(C, &str) -> (bool, String) + Send + Sync + 'static,
{
    let workers = options.workers.max(1);
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            jobs: VecDeque::new(),
            running: Vec::new(),
            results: Vec::new(),
            dispatched: 0,
            written: 0,
            in_flight_bytes: 0,
            closed: false,
            next_ready: false,
            idle_workers: 0,
            reader_waiting: false,
            writer_waiting: false,
            writer_polling: false,
        }),
        work: Condvar::new(),
        room: Condvar::new(),
        ready: Condvar::new(),
        max_in_flight: IN_FLIGHT_PER_WORKER * workers as u64,
    });
    {
        let (shared, records) = (shared.clone(), records.clone());
        let max_line = options.max_line_bytes;
        // Not joined: when stopped, it may sit in a read that never ends.
        std::thread::spawn(move || read_and_dispatch(input, max_line, &shared, &records.current));
    }
    for _ in 0..workers {
        spawn_worker(&shared, &records);
    }
    let result = write_in_order(output, &shared, options.deadline, stop, || {
        // A worker is stuck past the deadline: add one so the stream keeps
        // its pace; the stuck one leaves when its record returns.
        spawn_worker(&shared, &records);
    });
    let mut state = shared.lock();
    if result.is_err() {
        // Nobody reads the results any more: stop everything.
        state.jobs.clear();
    }
    state.closed = true;
    let dispatched = state.dispatched;
    drop(state);
    shared.work.notify_all();
    shared.room.notify_all();
    let mut summary = result?;
    summary.records = dispatched;
    Ok(summary)
}

/// Splits input lines, one buffer at a time, and dispatches every complete
/// line of a buffer together before reading the next.
fn read_and_dispatch<C: Clone>(
    mut input: impl BufRead,
    max_line: usize,
    shared: &Shared<C>,
    current: &impl Fn() -> C,
) {
    let mut splitter = Splitter::new(max_line);
    let mut lines = Vec::new();
    loop {
        let read = match input.fill_buf() {
            Ok([]) => 0,
            Ok(chunk) => {
                splitter.feed(chunk, &mut lines);
                chunk.len()
            }
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => 0,
        };
        if read == 0 {
            splitter.finish(&mut lines);
        } else {
            input.consume(read);
        }
        if !dispatch(shared, &mut lines, current) || read == 0 {
            break;
        }
    }
    let mut state = shared.lock();
    state.closed = true;
    let wake_writer = std::mem::take(&mut state.writer_waiting);
    drop(state);
    shared.work.notify_all();
    if wake_writer {
        shared.ready.notify_one();
    }
}

/// Queues `lines` as records, waiting for room as needed; false once the
/// stream is closed (stopped, or the output failed).
fn dispatch<C: Clone>(
    shared: &Shared<C>,
    lines: &mut Vec<(Line, usize)>,
    current: &impl Fn() -> C,
) -> bool {
    if lines.is_empty() {
        return true;
    }
    let mut chain = current();
    let mut state = shared.lock();
    let mut queued = 0;
    for (line, bytes) in lines.drain(..) {
        while !state.closed && !shared.has_room(&state) {
            wake_workers(shared, &state, queued);
            queued = 0;
            state.reader_waiting = true;
            state = shared.room.wait(state).unwrap_or_else(|p| p.into_inner());
            state.reader_waiting = false;
            // Records dispatched after the wait get the chain of now.
            chain = current();
        }
        if state.closed {
            return false;
        }
        let seq = state.dispatched;
        state.dispatched += 1;
        state.in_flight_bytes += bytes;
        state.jobs.push_back(Job {
            seq,
            line,
            bytes,
            chain: chain.clone(),
        });
        queued += 1;
    }
    wake_workers(shared, &state, queued);
    true
}

/// Wakes as many sleeping workers as records were queued, and no more.
fn wake_workers<C>(shared: &Shared<C>, state: &State<C>, queued: usize) {
    for _ in 0..queued.min(state.idle_workers) {
        shared.work.notify_one();
    }
}

/// Cuts a byte stream into lines, in chunks as they come: a line longer
/// than the limit is skipped (only its length is kept), `\r\n` is a line
/// end too, blank lines are dropped, and a UTF-8 byte order mark before the
/// first line (a file saved by a Windows editor) is dropped too.
struct Splitter {
    max: usize,
    /// The start of a line whose end has not come yet.
    partial: Vec<u8>,
    /// Bytes so far of a line already known to be too long.
    skipping: Option<usize>,
    /// Whether a line has ended yet.
    past_first: bool,
}

impl Splitter {
    fn new(max: usize) -> Self {
        Splitter {
            max,
            partial: Vec::new(),
            skipping: None,
            past_first: false,
        }
    }

    /// Takes every complete line of `chunk` into `out` (each with its input
    /// size) and keeps the rest for the next chunk.
    fn feed(&mut self, mut chunk: &[u8], out: &mut Vec<(Line, usize)>) {
        while let Some(end) = memchr::memchr(b'\n', chunk) {
            self.end_line(&chunk[..end], out);
            chunk = &chunk[end + 1..];
        }
        if chunk.is_empty() {
            return;
        }
        match &mut self.skipping {
            Some(skipped) => *skipped += chunk.len(),
            None if self.partial.len() + chunk.len() > self.max => {
                self.skipping = Some(self.partial.len() + chunk.len());
                self.partial = Vec::new();
            }
            None => self.partial.extend_from_slice(chunk),
        }
    }

    /// The last line, when the input does not end with a newline.
    fn finish(&mut self, out: &mut Vec<(Line, usize)>) {
        if self.skipping.is_some() || !self.partial.is_empty() {
            self.end_line(&[], out);
        }
    }

    fn end_line(&mut self, tail: &[u8], out: &mut Vec<(Line, usize)>) {
        let first = !std::mem::replace(&mut self.past_first, true);
        let length = self.skipping.take().unwrap_or(self.partial.len()) + tail.len();
        if length > self.max {
            self.partial.clear();
            // Nothing of it is kept: it counts no bytes in flight.
            out.push((
                Line::TooLong {
                    length,
                    limit: self.max,
                },
                0,
            ));
            return;
        }
        let mut text = std::mem::take(&mut self.partial);
        text.extend_from_slice(tail);
        if first && text.starts_with(b"\xef\xbb\xbf") {
            text.drain(..3);
        }
        while matches!(text.last(), Some(b'\r')) {
            text.pop();
        }
        if text.iter().all(u8::is_ascii_whitespace) {
            return;
        }
        let line = match String::from_utf8(text) {
            Ok(text) => Line::Text(text),
            Err(_) => Line::NotUtf8,
        };
        out.push((line, length));
    }
}

fn spawn_worker<C, F, R>(shared: &Arc<Shared<C>>, records: &Arc<Records<F, R>>)
where
    C: Send + 'static,
    F: Send + Sync + 'static,
    R: Fn(C, &str) -> (bool, String) + Send + Sync + 'static,
{
    let (shared, records) = (shared.clone(), records.clone());
    std::thread::spawn(move || work(&shared, &records.run));
}

/// A worker: one record at a time from the queue, its result into the
/// shared buffer, until the stream is closed and the queue empty.
fn work<C>(shared: &Shared<C>, run: &impl Fn(C, &str) -> (bool, String)) {
    let mut state = shared.lock();
    loop {
        let job = loop {
            if let Some(job) = state.jobs.pop_front() {
                break job;
            }
            if state.closed {
                return;
            }
            state.idle_workers += 1;
            state = shared.work.wait(state).unwrap_or_else(|p| p.into_inner());
            state.idle_workers -= 1;
        };
        let (seq, bytes) = (job.seq, job.bytes);
        let (failed, line) = match job.line {
            Line::Text(text) => {
                let text = Arc::new(text);
                state.running.push(Running {
                    seq,
                    since: Instant::now(),
                    bytes,
                    text: text.clone(),
                });
                drop(state);
                let result = run(job.chain, &text);
                state = shared.lock();
                let Some(at) = state.running.iter().position(|r| r.seq == seq) else {
                    // The writer gave this record a timeout line and a
                    // worker in this one's place: drop the late result and
                    // leave.
                    return;
                };
                state.running.swap_remove(at);
                result
            }
            Line::TooLong { length, limit } => failure(
                Value::Null,
                &[],
                "invalid_record",
                &format!(
                    "the line has {length} bytes, more than the limit of {limit} \
                     (--max-record-bytes)"
                ),
            ),
            Line::NotUtf8 => failure(Value::Null, &[], "invalid_record", "the line is not UTF-8"),
        };
        state.next_ready |= seq == state.written;
        // Wake the writer only for the result it waits for, and while more
        // are coming (records running or queued) only for a batch of them
        // if it wakes itself soon anyway (BUSY_POLL).
        if state.writer_waiting
            && state.next_ready
            && (!state.writer_polling
                || (state.running.is_empty() && state.jobs.is_empty())
                || state.results.len() + 1 >= WRITE_BATCH)
        {
            state.writer_waiting = false;
            shared.ready.notify_one();
        }
        state.results.push(Done {
            seq,
            failed,
            bytes,
            line,
        });
    }
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
    let mut ran = 0;
    match chain.run_traced(text, &mut ran) {
        Ok((record, _context)) => (
            false,
            success_line(&record, &chain.handled_by_json(ran), text.len()),
        ),
        Err(err) => match input() {
            Ok(input) => failure(
                input,
                chain.handled_by(ran),
                error_kind(&err),
                &err.to_string(),
            ),
            Err(line) => line,
        },
    }
}

/// `{"record": ..., "handledBy": [...]}`, written straight from the record
/// into the line rather than through a new JSON tree around it; `size` is
/// the input's length, to allocate once.
fn success_line(record: &Value, handled_by: &str, size: usize) -> String {
    let mut line = Vec::with_capacity(size + handled_by.len() + 256);
    line.extend_from_slice(b"{\"record\":");
    serde_json::to_writer(&mut line, record).expect("a Value serialises into memory");
    line.extend_from_slice(b",\"handledBy\":");
    line.extend_from_slice(handled_by.as_bytes());
    line.push(b'}');
    String::from_utf8(line).expect("serde_json writes UTF-8")
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
        "handledBy": crate::chain::handled_json(handled_by),
    });
    (true, line.to_string())
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

/// The writer: results in input order, in bulk as they come; a flush
/// whenever no further result is ready, so a slow stream's lines are not
/// held back in the buffer; a `timeout` line for each record past the
/// deadline; and the stop flag, which closes the stream.
fn write_in_order<C>(
    output: impl Write,
    shared: &Shared<C>,
    deadline: Duration,
    stop: &AtomicBool,
    mut replace_worker: impl FnMut(),
) -> std::io::Result<Summary> {
    let mut out = std::io::BufWriter::with_capacity(1 << 16, output);
    let mut summary = Summary::default();
    // Results ahead of their turn, at their number minus `next`.
    let mut pending: VecDeque<Option<Done>> = VecDeque::new();
    let mut next = 0u64;
    let mut taken = Vec::new();
    let mut overdue = Vec::new();
    let mut state = shared.lock();
    loop {
        if !state.closed && stop.load(Ordering::SeqCst) {
            // Stopping: nothing more is dispatched; what was is finished.
            log::info!(
                "stopping: no more records are read; finishing the {} in progress (a second \
                 signal ends at once)",
                state.dispatched - state.written
            );
            state.closed = true;
            shared.room.notify_all();
            shared.work.notify_all();
        }
        std::mem::swap(&mut state.results, &mut taken);
        state.next_ready = false;
        let now = Instant::now();
        state.running.retain(|record| {
            let late = now.duration_since(record.since) > deadline;
            if late {
                overdue.push((record.seq, record.bytes, record.text.clone()));
            }
            !late
        });
        drop(state);

        for (seq, bytes, text) in overdue.drain(..) {
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
            taken.push(Done {
                seq,
                failed,
                bytes,
                line,
            });
            replace_worker();
        }
        for done in taken.drain(..) {
            let at = usize::try_from(done.seq - next).expect("in-flight records are bounded");
            if pending.len() <= at {
                pending.resize_with(at + 1, || None);
            }
            pending[at] = Some(done);
        }
        let mut freed = 0;
        while let Some(Some(_)) = pending.front() {
            let Some(Some(done)) = pending.pop_front() else {
                unreachable!("the front was just seen to be a result")
            };
            if done.failed {
                summary.failures += 1;
            }
            crate::progress::PROGRESS.record_written(done.failed);
            out.write_all(done.line.as_bytes())?;
            out.write_all(b"\n")?;
            freed += done.bytes;
            next += 1;
        }

        state = shared.lock();
        state.written = next;
        state.in_flight_bytes -= freed;
        if state.reader_waiting && shared.has_half_room(&state) {
            state.reader_waiting = false;
            shared.room.notify_one();
        }
        if state.closed && next == state.dispatched {
            // Every record dispatched has its line; a worker still stuck in
            // a timed-out record is not waited for.
            break;
        }
        if state.results.is_empty() {
            // Nothing more is ready: what was written goes out now.
            drop(state);
            out.flush()?;
            state = shared.lock();
            if state.results.is_empty() {
                let now = Instant::now();
                let wait = if state.running.is_empty() && state.jobs.is_empty() {
                    STOP_POLL
                } else {
                    BUSY_POLL
                };
                let wait = state
                    .running
                    .iter()
                    .map(|record| {
                        deadline.saturating_sub(now.saturating_duration_since(record.since))
                    })
                    .min()
                    .map_or(wait, |left| wait.min(left + Duration::from_millis(1)));
                state.writer_waiting = true;
                state.writer_polling = wait <= BUSY_POLL;
                state = shared
                    .ready
                    .wait_timeout(state, wait)
                    .unwrap_or_else(|p| p.into_inner())
                    .0;
                state.writer_waiting = false;
            }
        }
    }
    drop(state);
    out.flush()?;
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU64;

    /// Output shared with the test.
    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);

    impl Write for Sink {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Sink {
        fn lines(&self) -> Vec<Value> {
            String::from_utf8(self.0.lock().unwrap().clone())
                .unwrap()
                .lines()
                .map(|line| serde_json::from_str(line).unwrap())
                .collect()
        }
    }

    fn options(workers: usize, deadline: Duration) -> ServeOptions {
        ServeOptions {
            workers,
            deadline,
            max_line_bytes: DEFAULT_MAX_LINE_BYTES,
        }
    }

    /// Records `{"seq": n, "sleepMs": m}`, with `sleep(n)` milliseconds.
    fn input(count: u64, sleep: impl Fn(u64) -> u64) -> std::io::Cursor<Vec<u8>> {
        let mut text = String::new();
        for seq in 0..count {
            text.push_str(&json!({"seq": seq, "sleepMs": sleep(seq)}).to_string());
            text.push('\n');
        }
        std::io::Cursor::new(text.into_bytes())
    }

    /// A stand-in for the chain: sleeps as the record says, and answers
    /// `{"seq": n, "chain": c}` with `c` the chain it was given.
    fn stand_in(chain: u64, text: &str) -> (bool, String) {
        let record: Value = serde_json::from_str(text).unwrap();
        std::thread::sleep(Duration::from_millis(record["sleepMs"].as_u64().unwrap()));
        (
            false,
            json!({"seq": record["seq"], "chain": chain}).to_string(),
        )
    }

    fn run_stand_in(
        input: impl BufRead + Send + 'static,
        options: &ServeOptions,
        stop: &AtomicBool,
    ) -> (Summary, Vec<Value>) {
        let sink = Sink::default();
        let records = Records {
            current: || 0,
            run: stand_in,
        };
        let summary = stream(Arc::new(records), input, sink.clone(), options, stop).unwrap();
        (summary, sink.lines())
    }

    fn seqs(lines: &[Value]) -> Vec<u64> {
        lines
            .iter()
            .map(|line| {
                line["seq"]
                    .as_u64()
                    .or_else(|| line["record"]["seq"].as_u64())
                    .unwrap()
            })
            .collect()
    }

    #[test]
    fn lines_keep_input_order_whatever_order_records_finish_in() {
        let count = 3000;
        let (summary, lines) = run_stand_in(
            input(count, |seq| u64::from(seq % 17 == 0) * 3),
            &options(4, DEFAULT_DEADLINE),
            &AtomicBool::new(false),
        );
        assert_eq!(summary.records, count);
        assert_eq!((summary.failures, summary.timeouts), (0, 0));
        assert_eq!(seqs(&lines), (0..count).collect::<Vec<_>>());
    }

    #[test]
    fn a_stuck_record_times_out_alone_and_the_records_around_it_flow() {
        // One worker: the records after the stuck one can only finish on
        // the worker that replaces it.
        let started = Instant::now();
        let (summary, lines) = run_stand_in(
            input(40, |seq| if seq == 3 { 3000 } else { 1 }),
            &options(1, Duration::from_millis(300)),
            &AtomicBool::new(false),
        );
        assert!(
            started.elapsed() < Duration::from_millis(2500),
            "the stream waited for the stuck record: {:?}",
            started.elapsed()
        );
        assert_eq!(summary.records, 40);
        assert_eq!((summary.failures, summary.timeouts), (1, 1));
        assert_eq!(seqs(&lines), (0..40).collect::<Vec<_>>());
        for (seq, line) in lines.iter().enumerate() {
            if seq == 3 {
                assert_eq!(line["error"]["kind"], "timeout", "{line}");
                assert_eq!(line["record"], json!({"seq": 3, "sleepMs": 3000}));
            } else {
                assert!(line.get("error").is_none(), "{line}");
            }
        }
    }

    #[test]
    fn each_record_gets_the_chain_of_its_dispatch_in_input_order() {
        let version = Arc::new(AtomicU64::new(0));
        let records = Records {
            current: {
                let version = version.clone();
                move || version.fetch_add(1, Ordering::SeqCst)
            },
            run: stand_in,
        };
        let sink = Sink::default();
        // A small buffer: many dispatches, so many chains.
        let input = std::io::BufReader::with_capacity(64, input(500, |_| 0));
        let summary = stream(
            Arc::new(records),
            input,
            sink.clone(),
            &options(3, DEFAULT_DEADLINE),
            &AtomicBool::new(false),
        )
        .unwrap();
        let lines = sink.lines();
        assert_eq!(summary.records, 500);
        assert_eq!(seqs(&lines), (0..500).collect::<Vec<_>>());
        let chains: Vec<u64> = lines.iter().map(|l| l["chain"].as_u64().unwrap()).collect();
        assert!(chains.windows(2).all(|w| w[0] <= w[1]), "{chains:?}");
        assert!(chains[499] > chains[0] + 10, "{chains:?}");
    }

    #[test]
    fn stop_finishes_what_was_dispatched_and_reads_no_more() {
        let (mut feed, read_end) = std::os::unix::net::UnixStream::pair().unwrap();
        for seq in 0..10 {
            writeln!(feed, "{}", json!({"seq": seq, "sleepMs": 0})).unwrap();
        }
        let stop = Arc::new(AtomicBool::new(false));
        let sink = Sink::default();
        let serving = {
            let (stop, sink) = (stop.clone(), sink.clone());
            std::thread::spawn(move || {
                let records = Records {
                    current: || 0,
                    run: stand_in,
                };
                let input = std::io::BufReader::new(read_end);
                stream(
                    Arc::new(records),
                    input,
                    sink,
                    &options(2, DEFAULT_DEADLINE),
                    &stop,
                )
            })
        };
        // The input stays open: only the stop flag ends the stream.
        let started = Instant::now();
        while sink.lines().len() < 10 {
            assert!(started.elapsed() < Duration::from_secs(10), "lines came");
            std::thread::sleep(Duration::from_millis(5));
        }
        stop.store(true, Ordering::SeqCst);
        let summary = serving.join().unwrap().unwrap();
        writeln!(feed, "{}", json!({"seq": 10, "sleepMs": 0})).unwrap();
        assert_eq!(summary.records, 10);
        assert_eq!(seqs(&sink.lines()), (0..10).collect::<Vec<_>>());
    }

    #[test]
    fn lines_are_cut_across_buffers_and_oversized_ones_skipped() {
        let mut splitter = Splitter::new(8);
        let mut out = Vec::new();
        for chunk in [
            &b"\xef\xbb"[..],
            b"\xbfab",
            b"c\r\n\n  \nd",
            b"\xff\n0123456789",
            b"01\n01234567\nlast",
        ] {
            splitter.feed(chunk, &mut out);
        }
        splitter.finish(&mut out);
        let shown: Vec<String> = out
            .iter()
            .map(|(line, _)| match line {
                Line::Text(text) => text.clone(),
                Line::TooLong { length, limit } => format!("too long: {length} > {limit}"),
                Line::NotUtf8 => "not utf-8".to_owned(),
            })
            .collect();
        assert_eq!(
            shown,
            ["abc", "not utf-8", "too long: 12 > 8", "01234567", "last"]
        );
    }
}
