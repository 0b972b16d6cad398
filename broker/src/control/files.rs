//! File mode (`cebus run -f file-or-folder`): the config source that polls YAML
//! files, settles a change before handing it over, and keeps the last good
//! config when a file is momentarily empty or does not parse.
//!
//! Every read of the disk runs on tokio's blocking pool, never on an async
//! thread. Polling (not inotify) works the same on every filesystem, including
//! editors that replace files and Kubernetes ConfigMap volumes.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::time::Duration;

use cebus_api::{ConfigError, ConfigFiles};

use super::source::{Admission, ConfigSource, Reload, Report, Snapshot};

/// Every how many polls the contents are hashed too, for the rare edit that
/// keeps size and timestamp.
const CONTENT_EVERY: u32 = 10;
/// A change is handed over once two reads this far apart agree: a file being
/// written (truncated, then filled) is not read half-way.
pub const SETTLE: Duration = Duration::from_millis(50);
/// Reads that may disagree before a poll gives up on a change that keeps
/// changing; the next poll tries again.
const SETTLE_TRIES: usize = 20;

/// The file-mode config source: a YAML file or a folder of them.
#[derive(Debug)]
pub struct FileSource {
    path: PathBuf,
    every: Duration,
    reload: Reload,
    /// Of the files as last read (what the next poll compares with).
    seen: Fingerprint,
    /// The files last handed over or refused: an unchanged read is not handed
    /// over again, nor its errors logged again.
    last: Option<ConfigFiles>,
    /// The files of the snapshot handed over and not yet reported on.
    pending: Option<ConfigFiles>,
    /// The files of the config in force (for the empty-file rule).
    good: Option<ConfigFiles>,
    /// Whether the first snapshot was reported (reloads are logged after it).
    started: bool,
}

impl FileSource {
    /// Polls `path` every `every`.
    pub fn new(path: impl Into<PathBuf>, every: Duration) -> FileSource {
        FileSource {
            path: path.into(),
            every,
            reload: Reload::default(),
            seen: Fingerprint::default(),
            last: None,
            pending: None,
            good: None,
            started: false,
        }
    }

    /// Hands `files` over if they load; logs and refuses them otherwise.
    fn offer(&mut self, files: ConfigFiles) -> Option<Snapshot> {
        self.last = Some(files.clone());
        let emptied = self
            .good
            .as_ref()
            .map(|good| emptied(good, &files))
            .unwrap_or_default();
        if !emptied.is_empty() {
            for file in emptied {
                tracing::error!(
                    error = %ConfigError::file(&file, EMPTIED),
                    "config reload rejected; keeping the last good config"
                );
            }
            return None;
        }
        match cebus_api::load_files(files.clone()) {
            Ok(config) => {
                self.pending = Some(files);
                Some(Snapshot {
                    config,
                    admission: Admission::Whole,
                })
            }
            Err(errors) => {
                log_rejected(&errors);
                None
            }
        }
    }
}

/// Why a file that became empty is not applied.
const EMPTIED: &str = "the file became empty (saved in place and not written yet?); \
                       the objects it declared keep running until it has content again; \
                       delete the file to remove them";

fn log_rejected(errors: &[ConfigError]) {
    for e in errors {
        tracing::error!(error = %e, "config reload rejected; keeping the last good config");
    }
}

impl ConfigSource for FileSource {
    async fn first(&mut self) -> Result<Snapshot, Vec<ConfigError>> {
        // Fingerprint before reading: an edit that lands between the two is
        // seen as a change by the next poll (and applied), never missed.
        let path = self.path.clone();
        let (seen, files) = blocking(move || {
            let meta = meta_fingerprint(&path);
            let files = cebus_api::read_path(&path);
            (meta, files)
        })
        .await;
        self.seen = Fingerprint {
            meta: seen,
            content: Some(content_fingerprint(&files)),
        };
        self.last = Some(files.clone());
        let config = cebus_api::load_files(files.clone())?;
        self.pending = Some(files);
        Ok(Snapshot {
            config,
            admission: Admission::Whole,
        })
    }

    async fn next(&mut self) -> Option<Snapshot> {
        let mut ticker = tokio::time::interval(self.every);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The first tick is immediate: a change written right after start (or
        // during the last reload) is looked for at once.
        let mut polls: u32 = 0;
        loop {
            let asked = tokio::select! {
                () = self.reload.requested() => true,
                _ = ticker.tick() => false,
            };
            polls = polls.wrapping_add(1);
            let path = self.path.clone();
            let hash_content = polls.is_multiple_of(CONTENT_EVERY);
            let seen = self.seen;
            let changed = asked
                || blocking(move || {
                    meta_fingerprint(&path) != seen.meta
                        || (hash_content
                            && Some(content_fingerprint(&cebus_api::read_path(&path)))
                                != seen.content)
                })
                .await;
            if !changed {
                continue;
            }
            let Some((meta, files)) = settle(&self.path).await else {
                tracing::warn!(path = %self.path.display(), "config keeps changing; waiting for it to settle");
                continue;
            };
            self.seen = Fingerprint {
                meta,
                content: Some(content_fingerprint(&files)),
            };
            if !asked && self.last.as_ref() == Some(&files) {
                continue; // e.g. saved again with the same contents
            }
            if let Some(snapshot) = self.offer(files) {
                return Some(snapshot);
            }
        }
    }

    async fn report(&mut self, report: Report) {
        let files = self.pending.take();
        if report.applied {
            self.good = files;
            if self.started {
                tracing::info!(path = %self.path.display(), "config reloaded");
            }
        } else if self.started {
            log_rejected(&report.errors);
        }
        self.started = true;
    }

    fn reloader(&self) -> Reload {
        self.reload.clone()
    }
}

/// Runs `f` on the blocking pool.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    match tokio::task::spawn_blocking(f).await {
        Ok(value) => value,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

/// Reads the files until two reads [`SETTLE`] apart agree; with the metadata
/// fingerprint taken before the agreeing reads. `None` if they kept changing.
async fn settle(path: &Path) -> Option<(Option<u64>, ConfigFiles)> {
    let read = |path: PathBuf| {
        blocking(move || {
            let meta = meta_fingerprint(&path);
            (meta, cebus_api::read_path(&path))
        })
    };
    let mut before = read(path.to_owned()).await;
    for _ in 0..SETTLE_TRIES {
        tokio::time::sleep(SETTLE).await;
        let now = read(path.to_owned()).await;
        if now.1 == before.1 {
            return Some(before);
        }
        before = now;
    }
    None
}

/// The files that were not empty in the config in force (`good`) and are empty
/// now (`now`): an in-place save between its truncation and its write. Only
/// whitespace counts as empty; a file whose only content is a comment or `---`
/// was emptied on purpose.
fn emptied(good: &ConfigFiles, now: &ConfigFiles) -> Vec<PathBuf> {
    let blank = |text: &str| text.trim().is_empty();
    now.texts
        .iter()
        .filter(|(file, text)| {
            blank(text)
                && good
                    .texts
                    .iter()
                    .any(|(f, before)| f == file && !blank(before))
        })
        .map(|(file, _)| file.clone())
        .collect()
}

/// What the watcher compares between polls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Fingerprint {
    /// Names, sizes, inodes and modification times: cheap, checked every poll.
    meta: Option<u64>,
    /// Names and contents: compared every [`CONTENT_EVERY`] polls.
    content: Option<u64>,
}

/// Config files: the file itself, or the `*.yaml`/`*.yml` regular files of a
/// directory (the loader's selection), sorted. Blocking.
fn config_files(path: &Path) -> Option<Vec<PathBuf>> {
    if !path.is_dir() {
        return Some(vec![path.to_owned()]);
    }
    let mut files = Vec::new();
    for entry in std::fs::read_dir(path).ok()? {
        let p = entry.ok()?.path();
        // Regular files only, so a folder named `x.yaml` cannot break the watch.
        if p.is_file() && matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")) {
            files.push(p);
        }
    }
    files.sort();
    Some(files)
}

/// Blocking.
fn meta_fingerprint(path: &Path) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    let mut h = DefaultHasher::new();
    for f in config_files(path)? {
        f.hash(&mut h);
        // A file that vanished mid-listing or cannot be read still counts, by name;
        // the loader reports why.
        if let Ok(m) = std::fs::metadata(&f) {
            (m.len(), m.ino(), m.mtime(), m.mtime_nsec()).hash(&mut h);
        }
    }
    Some(h.finish())
}

/// Names, contents and read errors of files already read.
fn content_fingerprint(files: &ConfigFiles) -> u64 {
    let mut h = DefaultHasher::new();
    files.texts.hash(&mut h);
    for e in &files.errors {
        e.to_string().hash(&mut h);
    }
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(texts: &[(&str, &str)]) -> ConfigFiles {
        ConfigFiles {
            texts: texts
                .iter()
                .map(|(f, t)| (PathBuf::from(f), (*t).to_owned()))
                .collect(),
            errors: Vec::new(),
        }
    }

    #[test]
    fn emptied_files_are_those_that_had_content_in_the_config_in_force() {
        let y = "kind: Broker\n";
        /// (file, text) pairs.
        type Texts<'a> = &'a [(&'a str, &'a str)];
        let cases: &[(Texts, Texts, &[&str])] = &[
            // good, now, emptied
            (&[("a", y)], &[("a", y)], &[]),
            (&[("a", y)], &[("a", "")], &["a"]),
            (&[("a", y)], &[("a", " \n\t\n")], &["a"]),
            (&[("a", y), ("b", y)], &[("a", y), ("b", "")], &["b"]),
            // Emptied on purpose: a comment or a document marker is content.
            (&[("a", y)], &[("a", "# nothing here\n")], &[]),
            (&[("a", y)], &[("a", "---\n")], &[]),
            // Already empty in the config in force, or new and still empty
            // (an editor creates, then writes): nothing is lost by applying.
            (&[("a", "")], &[("a", "")], &[]),
            (&[("a", y)], &[("a", y), ("new", "")], &[]),
            // A deleted file is a real removal, not an empty one.
            (&[("a", y), ("b", y)], &[("a", y)], &[]),
        ];
        for (good, now, want) in cases {
            let got = emptied(&files(good), &files(now));
            let want: Vec<PathBuf> = want.iter().map(PathBuf::from).collect();
            assert_eq!(got, want, "good {good:?}, now {now:?}");
        }
    }

    #[test]
    fn content_fingerprint_sees_contents_and_read_errors() {
        let a = files(&[("a", "x")]);
        let mut b = a.clone();
        assert_eq!(content_fingerprint(&a), content_fingerprint(&b));
        b.texts[0].1 = "y".into();
        assert_ne!(content_fingerprint(&a), content_fingerprint(&b));
        let mut c = a.clone();
        c.errors
            .push(ConfigError::file(Path::new("b"), "cannot read"));
        assert_ne!(content_fingerprint(&a), content_fingerprint(&c));
    }

    fn dir() -> tempfile::TempDir {
        tempfile::tempdir().expect("tempdir")
    }

    const BROKER: &str =
        "apiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata:\n  name: b\n";

    async fn started(path: &Path) -> FileSource {
        let mut source = FileSource::new(path, Duration::from_millis(10));
        let first = source.first().await.expect("first config loads");
        assert_eq!(first.config.brokers.len(), 1);
        source
            .report(Report {
                applied: true,
                ..Report::default()
            })
            .await;
        source
    }

    #[tokio::test(start_paused = true)]
    async fn an_emptied_file_is_not_handed_over_and_its_content_again_is() {
        let dir = dir();
        let file = dir.path().join("c.yaml");
        std::fs::write(&file, BROKER).unwrap();
        let mut source = started(dir.path()).await;
        std::fs::write(&file, "").unwrap();
        // Emptied: refused, so `next` keeps waiting.
        let waited = tokio::time::timeout(Duration::from_millis(300), source.next()).await;
        assert!(waited.is_err(), "an emptied file was handed over");
        // Written again, with one more broker: handed over.
        std::fs::write(
            &file,
            format!("{BROKER}---\n{}", BROKER.replace("name: b", "name: c")),
        )
        .unwrap();
        let next = tokio::time::timeout(Duration::from_secs(5), source.next())
            .await
            .expect("the refilled file is handed over")
            .expect("the source goes on");
        assert_eq!(next.config.brokers.len(), 2);
        assert_eq!(next.admission, Admission::Whole);
    }

    #[tokio::test(start_paused = true)]
    async fn a_reload_request_hands_the_files_over_even_unchanged() {
        let dir = dir();
        std::fs::write(dir.path().join("c.yaml"), BROKER).unwrap();
        let mut source = FileSource::new(dir.path(), Duration::from_secs(3600));
        let _ = source.first().await.expect("loads");
        source
            .report(Report {
                applied: true,
                ..Report::default()
            })
            .await;
        // The first tick is immediate and finds nothing new; the request does.
        let reload = source.reloader();
        reload.now();
        let next = tokio::time::timeout(Duration::from_secs(5), source.next())
            .await
            .expect("handed over on request")
            .expect("the source goes on");
        assert_eq!(next.config.brokers.len(), 1);
    }

    #[tokio::test]
    async fn first_reports_load_errors() {
        let dir = dir();
        std::fs::write(dir.path().join("c.yaml"), "kind: [").unwrap();
        let mut source = FileSource::new(dir.path(), Duration::from_millis(10));
        let errors = source
            .first()
            .await
            .expect_err("a syntax error stops the start");
        assert!(errors[0].message.starts_with("invalid YAML"), "{errors:?}");
    }
}
