//! TensorBoard's event files, written without TensorFlow: a file of records, each
//! `u64` length (little-endian), the masked CRC-32C of those 8 bytes, the data, and the
//! masked CRC-32C of the data; every record's data is an `Event` message
//! (`tensorboard/compat/proto/event.proto`). The first event names the format
//! (`brain.Event:2`); then scalars (`Summary.Value.simple_value`), text (a string tensor
//! for the `text` plugin) and `SessionLog.START`, which tells TensorBoard that a run
//! restarted at a step, so it drops what an earlier session wrote from that step on.
//!
//! Field numbers, from TensorBoard's protos: `Event` wall_time 1 (double), step 2 (int64),
//! file_version 3, summary 5, session_log 7; `Summary` value 1; `Summary.Value` tag 1,
//! simple_value 2 (float), tensor 8, metadata 9; `SummaryMetadata` plugin_data 1
//! (`PluginData` plugin_name 1); `TensorProto` dtype 1 (DT_STRING = 7), tensor_shape 2,
//! string_val 8; `SessionLog` status 1 (START = 1).

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use super::crc32c::masked_crc32c;
use super::protobuf::Message;

use crate::store::layout::TENSORBOARD_FILE_PREFIX as FILE_PREFIX;

/// The format the first event of every file declares.
const FILE_VERSION: &str = "brain.Event:2";
const DT_STRING: i64 = 7;
const SESSION_START: i64 = 1;

/// One record around `data`.
pub fn record(data: &[u8]) -> Vec<u8> {
    let length = (data.len() as u64).to_le_bytes();
    let mut out = Vec::with_capacity(data.len() + 16);
    out.extend_from_slice(&length);
    out.extend_from_slice(&masked_crc32c(&length).to_le_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(&masked_crc32c(data).to_le_bytes());
    out
}

/// An `Event` at `wall_time` (seconds since 1970) and `step`; a zero step is left out, as
/// protobuf leaves out default values.
fn event(wall_time: f64, step: u64) -> Message {
    let event = Message::new().double(1, wall_time);
    match step {
        0 => event,
        step => event.int(2, step as i64),
    }
}

/// The first event of a file.
pub fn file_version_event(wall_time: f64) -> Vec<u8> {
    Message::new()
        .double(1, wall_time)
        .bytes(3, FILE_VERSION.as_bytes())
        .into_bytes()
}

/// Scalars at `step`, one `Summary.Value` each (TensorBoard stores them as 32-bit floats).
pub fn scalars_event(wall_time: f64, step: u64, values: &[(&str, f64)]) -> Vec<u8> {
    let summary = values.iter().fold(Message::new(), |summary, (tag, value)| {
        let value = Message::new()
            .bytes(1, tag.as_bytes())
            .float(2, *value as f32);
        summary.message(1, value)
    });
    event(wall_time, step).message(5, summary).into_bytes()
}

/// `text` (Markdown) under `tag` at `step`, for TensorBoard's text dashboard.
pub fn text_event(wall_time: f64, step: u64, tag: &str, text: &str) -> Vec<u8> {
    let tensor = Message::new()
        .int(1, DT_STRING)
        .message(2, Message::new())
        .bytes(8, text.as_bytes());
    let metadata = Message::new().message(1, Message::new().bytes(1, b"text"));
    let value = Message::new()
        .bytes(1, tag.as_bytes())
        .message(8, tensor)
        .message(9, metadata);
    event(wall_time, step)
        .message(5, Message::new().message(1, value))
        .into_bytes()
}

/// A session (re)starting at `step`: TensorBoard drops the events of earlier sessions at
/// `step` and after.
pub fn session_start_event(wall_time: f64, step: u64) -> Vec<u8> {
    event(wall_time, step)
        .message(7, Message::new().int(1, SESSION_START))
        .into_bytes()
}

/// Seconds since 1970, as events carry them.
pub fn wall_time_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// An events file this process writes. Each event goes to the file in one write, so a
/// reader sees it as soon as it is written (and at worst a record cut short at the end,
/// which TensorBoard's reader waits on).
#[derive(Debug)]
pub struct EventFile {
    path: PathBuf,
    file: File,
}

impl EventFile {
    /// Creates a new file in `dir`, `events.out.tfevents.<unix seconds>.<host>.<pid>`, and
    /// writes the format event. Never opens an existing file: a session killed in the
    /// middle of a record leaves a file nothing may be appended to. TensorBoard reads a
    /// folder's files in name order, so a session that starts within the second of an
    /// earlier one's file takes the next second for its name.
    pub fn create(dir: &Path) -> io::Result<Self> {
        let now = wall_time_now();
        let seconds = newest_seconds(dir).map_or(now as u64, |s| (now as u64).max(s + 1));
        let host: String = crate::store::lock::host_name()
            .chars()
            .map(
                |c| match c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    true => c,
                    false => '_',
                },
            )
            .collect();
        let stem = format!("{FILE_PREFIX}{seconds:010}.{host}.{}", std::process::id());
        let mut attempt = 0;
        let (path, file) = loop {
            let path = match attempt {
                0 => dir.join(&stem),
                n => dir.join(format!("{stem}.{n}")),
            };
            match OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(file) => break (path, file),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempt < 100 => attempt += 1,
                Err(e) => return Err(e),
            }
        };
        let mut events = Self { path, file };
        events.write(&file_version_event(now))?;
        Ok(events)
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one event (as encoded by the functions above).
    pub fn write(&mut self, event: &[u8]) -> io::Result<()> {
        self.file.write_all(&record(event))?;
        self.file.flush()
    }

    /// Makes what was written durable (after evaluations).
    pub fn sync(&self) -> io::Result<()> {
        self.file.sync_data()
    }
}

/// The largest time stamp among the names of the events files in `dir`.
fn newest_seconds(dir: &Path) -> Option<u64> {
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| {
            let name = e.ok()?.file_name().to_string_lossy().into_owned();
            name.strip_prefix(FILE_PREFIX)?
                .split('.')
                .next()?
                .parse()
                .ok()
        })
        .max()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    // The expected bytes are what TensorBoard's own protobuf classes and
    // `pywrap_tensorflow.masked_crc32c` (tensorboard 2.21) produce for the same events.
    const WALL: f64 = 1_456_247_045.5;

    #[test]
    fn the_format_event_and_its_record_match_tensorboard_byte_for_byte() {
        let event = file_version_event(WALL);
        assert_eq!(
            hex(&event),
            "090000604124b3d5411a0d627261696e2e4576656e743a32"
        );
        assert_eq!(
            hex(&record(&event)),
            "1800000000000000a37f4b22090000604124b3d5411a0d627261696e2e4576656e743a32fc6de1eb"
        );
    }

    #[test]
    fn scalars_text_and_session_start_match_tensorboard() {
        assert_eq!(
            hex(&scalars_event(WALL, 340, &[("eval/top1_error", 0.75)])),
            "090000604124b3d54110d4022a180a160a0f6576616c2f746f70315f6572726f72150000403f"
        );
        assert_eq!(
            hex(&session_start_event(WALL, 657)),
            "090000604124b3d5411091053a020801"
        );
        assert_eq!(
            hex(&text_event(WALL, 0, "config", "seed: 0")),
            "090000604124b3d5412a230a210a06636f6e666967420d080712004207736565643a20304a080a060a0474657874"
        );
    }

    #[test]
    fn a_new_file_per_session_each_starting_with_the_format() {
        let dir = tempfile::tempdir().unwrap();
        let mut a = EventFile::create(dir.path()).unwrap();
        let b = EventFile::create(dir.path()).unwrap();
        // The second session's file sorts after the first's, even within one second.
        assert!(b.path() > a.path(), "{:?} {:?}", a.path(), b.path());
        let name = a.path().file_name().unwrap().to_string_lossy().into_owned();
        assert!(name.starts_with(FILE_PREFIX), "{name}");
        a.write(&scalars_event(WALL, 1, &[("x", 1.0)])).unwrap();
        let bytes = std::fs::read(a.path()).unwrap();
        let first = record(&file_version_event(0.0)).len();
        assert_eq!(
            &bytes[first..],
            &record(&scalars_event(WALL, 1, &[("x", 1.0)]))[..]
        );
    }
}
