//! The audit log: every token hand-out, denial, timeout, connect, disconnect, refresh failure,
//! key and policy change — time, agent, provider, account, action, outcome; never a secret.
//!
//! Entries go through a channel to a writer thread with its own SQLite connection, which
//! commits them in groups (`synchronous=NORMAL`): a hand-out never waits for its audit entry,
//! and a crash can lose at most the last few milliseconds of entries — never a token, which
//! is written on the vault's own `synchronous=FULL` connection.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use rusqlite::{Connection, params};
use serde::Serialize;

use crate::{Error, Result};

/// Entries kept; older ones are pruned.
pub const RETAIN_ENTRIES: i64 = 100_000;
const BATCH_WAIT: Duration = Duration::from_millis(5);

/// What an audit entry is about. Stored and shown as the lowercase word ("token", "proxy", …).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub enum Action {
    /// A token hand-out (or its refusal).
    #[default]
    Token,
    /// A call through the proxy.
    Proxy,
    /// A connection made (consent session, or a credential pasted by the owner).
    Connect,
    Disconnect,
    Refresh,
    /// The person's answer to an approval prompt.
    Approval,
    Pause,
    Settings,
    /// An agent key created or revoked.
    Key,
    Policy,
    /// An OAuth client registered for a provider.
    Client,
    /// A word written by another version of Akhrot, kept as read.
    Other(String),
}

impl Action {
    /// Every action a filter may name.
    pub const ALL: [Action; 11] = [
        Action::Token,
        Action::Proxy,
        Action::Connect,
        Action::Disconnect,
        Action::Refresh,
        Action::Approval,
        Action::Pause,
        Action::Settings,
        Action::Key,
        Action::Policy,
        Action::Client,
    ];

    pub fn as_str(&self) -> &str {
        match self {
            Action::Token => "token",
            Action::Proxy => "proxy",
            Action::Connect => "connect",
            Action::Disconnect => "disconnect",
            Action::Refresh => "refresh",
            Action::Approval => "approval",
            Action::Pause => "pause",
            Action::Settings => "settings",
            Action::Key => "key",
            Action::Policy => "policy",
            Action::Client => "client",
            Action::Other(s) => s,
        }
    }

    /// Parses one of the known words (not [`Action::Other`]).
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.as_str() == s)
    }

    /// The known words, comma-separated (for error messages).
    pub fn valid_words() -> String {
        Self::ALL
            .iter()
            .map(Action::as_str)
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Reads a stored word; an unknown one is kept as [`Action::Other`].
    pub fn from_stored(s: String) -> Self {
        Self::parse(&s).unwrap_or(Action::Other(s))
    }
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Action {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for Action {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        String::deserialize(d).map(Action::from_stored)
    }
}

/// How an audited event ended. Stored and shown as a word ("handed_out", "denied", …), an
/// HTTP status ("200", "502") for proxied calls, the answer for approvals ("for 3600s"), the
/// mode for policy changes ("proxy-only").
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Outcome {
    #[default]
    HandedOut,
    Denied,
    Timeout,
    Error,
    Started,
    Connected,
    Replaced,
    Conflict,
    Failed,
    Refreshed,
    NeedsReconnect,
    Removed,
    RevokedAndRemoved,
    Created,
    Revoked,
    Changed,
    Set,
    On,
    Off,
    /// The upstream's HTTP status of a proxied call.
    Status(u16),
    /// The person's answer to an approval prompt.
    Answer(crate::approvals::Answer),
    /// A policy's new mode.
    Policy(crate::vault::Mode),
    /// A word written by another version of Akhrot, kept as read.
    Other(String),
}

impl Outcome {
    const WORDS: [(Outcome, &'static str); 19] = [
        (Outcome::HandedOut, "handed_out"),
        (Outcome::Denied, "denied"),
        (Outcome::Timeout, "timeout"),
        (Outcome::Error, "error"),
        (Outcome::Started, "started"),
        (Outcome::Connected, "connected"),
        (Outcome::Replaced, "replaced"),
        (Outcome::Conflict, "conflict"),
        (Outcome::Failed, "failed"),
        (Outcome::Refreshed, "refreshed"),
        (Outcome::NeedsReconnect, "needs_reconnect"),
        (Outcome::Removed, "removed"),
        (Outcome::RevokedAndRemoved, "revoked_and_removed"),
        (Outcome::Created, "created"),
        (Outcome::Revoked, "revoked"),
        (Outcome::Changed, "changed"),
        (Outcome::Set, "set"),
        (Outcome::On, "on"),
        (Outcome::Off, "off"),
    ];

    /// The word as stored and shown.
    pub fn as_string(&self) -> String {
        match self {
            Outcome::Status(s) => s.to_string(),
            Outcome::Answer(a) => a.as_str(),
            Outcome::Policy(m) => m.as_str().to_owned(),
            Outcome::Other(s) => s.clone(),
            fixed => Self::WORDS
                .iter()
                .find(|(o, _)| o == fixed)
                .map(|(_, w)| (*w).to_owned())
                .unwrap_or_default(),
        }
    }

    /// Reads a stored word: a fixed word, a three-digit status, an answer or a mode (by their
    /// shown form); anything else is kept as [`Outcome::Other`].
    pub fn from_stored(s: String) -> Self {
        use crate::approvals::Answer;
        if let Some((o, _)) = Self::WORDS.iter().find(|(_, w)| *w == s) {
            return o.clone();
        }
        if s.len() == 3
            && s.bytes().all(|b| b.is_ascii_digit())
            && let Ok(n) = s.parse::<u16>()
        {
            return Outcome::Status(n);
        }
        if let Some(a) = Answer::parse_shown(&s) {
            return Outcome::Answer(a);
        }
        match crate::vault::Mode::parse(&s).filter(|m| m.as_str() == s) {
            Some(m) => Outcome::Policy(m),
            None => Outcome::Other(s),
        }
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.as_string())
    }
}

impl Serialize for Outcome {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.as_string())
    }
}

impl<'de> serde::Deserialize<'de> for Outcome {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        String::deserialize(d).map(Outcome::from_stored)
    }
}

/// One audit entry as stored and shown.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Entry {
    pub id: i64,
    /// Unix milliseconds.
    pub at: i64,
    pub agent_id: Option<String>,
    pub agent: Option<String>,
    pub provider: Option<String>,
    pub account: Option<String>,
    pub action: Action,
    pub outcome: Outcome,
    pub detail: Option<String>,
    /// What the OS said about the calling process (JSON), when known.
    pub peer: Option<serde_json::Value>,
    /// Identical events within one commit group (a burst of hand-outs to one agent) are one
    /// entry: how many, and when the last one was (unix milliseconds).
    pub count: i64,
    pub last_at: Option<i64>,
}

impl Entry {
    pub fn new(action: Action, outcome: Outcome) -> Self {
        Self {
            at: now_ms(),
            action,
            outcome,
            count: 1,
            ..Default::default()
        }
    }
    pub fn agent(mut self, id: &str, name: &str) -> Self {
        self.agent_id = Some(id.to_owned());
        self.agent = Some(name.to_owned());
        self
    }
    pub fn provider(mut self, p: &str) -> Self {
        self.provider = Some(p.to_owned());
        self
    }
    pub fn account(mut self, a: Option<&str>) -> Self {
        self.account = a.map(str::to_owned);
        self
    }
    pub fn detail(mut self, d: impl Into<String>) -> Self {
        self.detail = Some(crate::clean_text(&d.into()));
        self
    }
    pub fn peer(mut self, p: Option<serde_json::Value>) -> Self {
        self.peer = p;
        self
    }
}

fn now_ms() -> i64 {
    i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis(),
    )
    .unwrap_or(i64::MAX)
}

/// Which entries to read, newest first.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub agent: Option<String>,
    pub provider: Option<String>,
    pub action: Option<Action>,
    /// Only entries with a smaller id (paging).
    pub before: Option<i64>,
    pub limit: usize,
}

/// What the request path and the writer share: a buffer appended to without waking anyone,
/// drained by the writer every [`BATCH_WAIT`].
#[derive(Default)]
struct Shared {
    state: Mutex<Buffer>,
    /// Wakes the writer early (flush, close).
    wake: Condvar,
    /// Tells flushers a batch was committed.
    written: Condvar,
}

#[derive(Default)]
struct Buffer {
    entries: Vec<Entry>,
    /// Entries handed in, and entries committed (or given up on), since start.
    queued: u64,
    done: u64,
    urgent: bool,
    closing: bool,
    closed: bool,
}

/// The audit log's handle: cheap to clone, safe to use from any thread.
#[derive(Clone)]
pub struct Audit {
    shared: Arc<Shared>,
    path: PathBuf,
    written: tokio::sync::broadcast::Sender<Entry>,
}

impl Audit {
    /// Starts the writer on the vault's database (the `audit` table exists once the vault is open).
    pub fn start(db_path: &Path) -> Result<Self> {
        let conn = open(db_path)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(Error::from)?;
        let shared = Arc::new(Shared::default());
        let (written, _) = tokio::sync::broadcast::channel(256);
        let (s, notify) = (shared.clone(), written.clone());
        std::thread::Builder::new()
            .name("akhrot-audit".into())
            .spawn(move || writer(conn, &s, &notify))
            .map_err(|e| Error::Io(format!("cannot start the audit writer: {e}")))?;
        Ok(Self {
            shared,
            path: db_path.to_owned(),
            written,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Buffer> {
        self.shared.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues an entry; never blocks on the disk.
    pub fn record(&self, e: Entry) {
        let mut b = self.lock();
        if b.closed {
            return;
        }
        let was_empty = b.entries.is_empty();
        let mut e = e;
        e.count = e.count.max(1);
        b.queued += u64::try_from(e.count).unwrap_or(1);
        b.entries.push(e);
        // One wake-up per group, not per entry.
        if was_empty {
            self.shared.wake.notify_one();
        }
    }

    /// Records a token hand-out. A hand-out identical to one already waiting in the current
    /// group (same agent, provider, account, no process detail) only bumps its count: the hot
    /// path allocates nothing in steady state.
    pub fn record_handout(&self, agent_id: &str, agent: &str, provider: &str, account: &str) {
        let now = now_ms();
        let mut b = self.lock();
        if b.closed {
            return;
        }
        let same = b.entries.iter_mut().rev().take(8).find(|e| {
            e.action == Action::Token
                && e.outcome == Outcome::HandedOut
                && e.peer.is_none()
                && e.detail.is_none()
                && e.agent_id.as_deref() == Some(agent_id)
                && e.provider.as_deref() == Some(provider)
                && e.account.as_deref() == Some(account)
        });
        if let Some(e) = same {
            e.count += 1;
            e.last_at = Some(now);
            b.queued += 1;
            return;
        }
        drop(b);
        self.record(
            Entry::new(Action::Token, Outcome::HandedOut)
                .agent(agent_id, agent)
                .provider(provider)
                .account(Some(account)),
        );
    }

    /// Waits until everything queued so far is committed.
    pub fn flush(&self) {
        let mut b = self.lock();
        let target = b.queued;
        b.urgent = true;
        self.shared.wake.notify_one();
        self.wait_until(b, |b| b.done >= target || b.closed);
    }

    /// Waits (at most 5 s) for the writer to reach `done`.
    fn wait_until(&self, mut b: std::sync::MutexGuard<'_, Buffer>, done: impl Fn(&Buffer) -> bool) {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !done(&b) {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return;
            }
            b = self
                .shared
                .written
                .wait_timeout(b, left)
                .map(|(g, _)| g)
                .unwrap_or_else(|p| p.into_inner().0);
        }
    }

    /// Writes what is queued and closes the writer's connection; later entries are dropped.
    /// Call at shutdown, so the database is left checkpointed.
    pub fn close(&self) {
        {
            let mut b = self.lock();
            b.closing = true;
            self.shared.wake.notify_one();
        }
        self.flush();
        self.wait_until(self.lock(), |b| b.closed);
    }

    /// Entries as they are committed (for the UI's live view).
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Entry> {
        self.written.subscribe()
    }

    /// Reads entries, newest first.
    pub fn query(&self, f: &Filter) -> Result<Vec<Entry>> {
        self.flush();
        let conn = open(&self.path)?;
        let mut sql = String::from(
            "SELECT id, at, agent_id, agent, provider, account, action, outcome, detail, peer, count, last_at
             FROM audit WHERE 1=1",
        );
        let mut args: Vec<Box<dyn rusqlite::ToSql>> = Vec::new();
        if let Some(a) = &f.agent {
            sql.push_str(" AND (agent = ? OR agent_id = ?)");
            args.push(Box::new(a.clone()));
            args.push(Box::new(a.clone()));
        }
        if let Some(p) = &f.provider {
            sql.push_str(" AND provider = ?");
            args.push(Box::new(p.clone()));
        }
        if let Some(a) = &f.action {
            sql.push_str(" AND action = ?");
            args.push(Box::new(a.as_str().to_owned()));
        }
        if let Some(b) = f.before {
            sql.push_str(" AND id < ?");
            args.push(Box::new(b));
        }
        sql.push_str(" ORDER BY id DESC LIMIT ?");
        args.push(Box::new(
            i64::try_from(f.limit.clamp(1, 10_000)).unwrap_or(100),
        ));
        let mut st = conn.prepare(&sql).map_err(Error::from)?;
        let rows = st
            .query_map(
                rusqlite::params_from_iter(args.iter().map(|b| b.as_ref())),
                |r| {
                    let peer: Option<String> = r.get(9)?;
                    Ok(Entry {
                        id: r.get(0)?,
                        at: r.get(1)?,
                        agent_id: r.get(2)?,
                        agent: r.get(3)?,
                        provider: r.get(4)?,
                        account: r.get(5)?,
                        action: Action::from_stored(r.get(6)?),
                        outcome: Outcome::from_stored(r.get(7)?),
                        detail: r.get(8)?,
                        peer: peer.and_then(|p| serde_json::from_str(&p).ok()),
                        count: r.get(10)?,
                        last_at: r.get(11)?,
                    })
                },
            )
            .map_err(Error::from)?;
        rows.collect::<rusqlite::Result<_>>().map_err(Error::from)
    }
}

fn open(path: &Path) -> Result<Connection> {
    let c = Connection::open(path)
        .map_err(|e| Error::Storage(format!("cannot open {}: {e}", path.display())))?;
    c.busy_timeout(Duration::from_secs(5))
        .map_err(Error::from)?;
    Ok(c)
}

fn writer(mut conn: Connection, shared: &Shared, notify: &tokio::sync::broadcast::Sender<Entry>) {
    let lock = || shared.state.lock().unwrap_or_else(|p| p.into_inner());
    let mut batches = 0u64;
    loop {
        // Sleep until there is something to do; then give the group a moment to gather.
        let gather = {
            let mut b = lock();
            while b.entries.is_empty() && !b.urgent && !b.closing {
                b = shared.wake.wait(b).unwrap_or_else(|p| p.into_inner());
            }
            !b.urgent && !b.closing
        };
        if gather {
            std::thread::sleep(BATCH_WAIT);
        }
        let (mut batch, closing) = {
            let mut b = lock();
            b.urgent = false;
            (std::mem::take(&mut b.entries), b.closing)
        };
        let n: u64 = batch
            .iter()
            .map(|e| u64::try_from(e.count).unwrap_or(1))
            .sum();
        if !batch.is_empty() {
            match write_batch(&mut conn, &mut batch) {
                Ok(()) if notify.receiver_count() > 0 => {
                    for e in batch {
                        let _ = notify.send(e);
                    }
                }
                Ok(()) => {}
                Err(e) => tracing::error!(error = %e, "could not write audit entries"),
            }
            batches += 1;
            if batches.is_multiple_of(1024) {
                let _ = conn.execute(
                    "DELETE FROM audit WHERE id <= (SELECT max(id) FROM audit) - ?1",
                    [RETAIN_ENTRIES],
                );
            }
        }
        let mut b = lock();
        b.done += n;
        if closing && b.entries.is_empty() {
            drop(conn);
            b.closed = true;
            shared.written.notify_all();
            return;
        }
        shared.written.notify_all();
    }
}

/// Folds identical events of one group into one entry with a count (order kept).
fn coalesce(batch: Vec<Entry>) -> Vec<Entry> {
    let mut out: Vec<Entry> = Vec::with_capacity(batch.len().min(64));
    let mut index: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for e in batch {
        // Every field that distinguishes events, NUL-separated.
        let key = [
            e.agent_id.as_deref().unwrap_or(""),
            e.provider.as_deref().unwrap_or(""),
            e.account.as_deref().unwrap_or(""),
            e.action.as_str(),
            &e.outcome.as_string(),
            e.detail.as_deref().unwrap_or(""),
            &e.peer.as_ref().map(|p| p.to_string()).unwrap_or_default(),
        ]
        .join("\0");
        match index.get(&key) {
            Some(&i) => {
                let first = &mut out[i];
                first.count += e.count;
                first.last_at = Some(
                    e.last_at
                        .unwrap_or(e.at)
                        .max(first.last_at.unwrap_or(first.at)),
                );
            }
            None => {
                index.insert(key, out.len());
                out.push(e);
            }
        }
    }
    out
}

fn write_batch(conn: &mut Connection, batch: &mut Vec<Entry>) -> rusqlite::Result<()> {
    *batch = coalesce(std::mem::take(batch));
    let tx = conn.transaction()?;
    {
        let mut st = tx.prepare_cached(
            "INSERT INTO audit (at, agent_id, agent, provider, account, action, outcome, detail, peer, count, last_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
        )?;
        for e in batch.iter_mut() {
            st.execute(params![
                e.at,
                e.agent_id,
                e.agent,
                e.provider,
                e.account,
                e.action.as_str(),
                e.outcome.as_string(),
                e.detail,
                e.peer.as_ref().map(|p| p.to_string()),
                e.count,
                e.last_at,
            ])?;
            e.id = tx.last_insert_rowid();
        }
    }
    tx.commit()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identical_events_of_a_group_fold_into_one_with_a_count() {
        let e = |agent: &str, outcome: &str, at: i64| Entry {
            at,
            ..Entry::new(Action::Token, Outcome::from_stored(outcome.to_owned()))
                .agent(agent, agent)
                .provider("openai")
        };
        let out = coalesce(vec![
            e("a", "handed_out", 1),
            e("b", "handed_out", 2),
            e("a", "handed_out", 3),
            e("a", "denied", 4),
            e("a", "handed_out", 5),
        ]);
        let summary: Vec<(&str, String, i64, Option<i64>)> = out
            .iter()
            .map(|e| {
                (
                    e.agent.as_deref().unwrap(),
                    e.outcome.as_string(),
                    e.count,
                    e.last_at,
                )
            })
            .collect();
        assert_eq!(
            summary,
            vec![
                ("a", "handed_out".to_owned(), 3, Some(5)),
                ("b", "handed_out".to_owned(), 1, None),
                ("a", "denied".to_owned(), 1, None)
            ]
        );
    }

    #[test]
    fn every_stored_word_reads_back_as_itself() {
        use crate::approvals::Answer;
        let mut all: Vec<Outcome> = Outcome::WORDS.iter().map(|(o, _)| o.clone()).collect();
        all.extend([
            Outcome::Status(200),
            Outcome::Status(502),
            Outcome::Answer(Answer::Once),
            Outcome::Answer(Answer::For(3600)),
            Outcome::Answer(Answer::UntilQuit),
            Outcome::Answer(Answer::Always),
            Outcome::Policy(crate::vault::Mode::ProxyOnly),
            Outcome::Policy(crate::vault::Mode::Allow),
            Outcome::Other("something new".into()),
        ]);
        for o in all {
            assert_eq!(Outcome::from_stored(o.as_string()), o, "{o}");
        }
        // "deny" is both an answer and a mode: it reads back as the same word.
        assert_eq!(
            Outcome::from_stored(Outcome::Policy(crate::vault::Mode::Deny).as_string()).as_string(),
            "deny"
        );
        for a in Action::ALL {
            assert_eq!(Action::from_stored(a.to_string()), a);
        }
        assert_eq!(Action::parse("nope"), None);
        assert_eq!(
            serde_json::to_value(Entry::new(Action::Proxy, Outcome::Status(502))).unwrap()["outcome"],
            "502"
        );
        let o: Outcome = serde_json::from_str("\"for 60s\"").unwrap();
        assert_eq!(o, Outcome::Answer(Answer::For(60)));
        let a: Action = serde_json::from_str("\"policy\"").unwrap();
        assert_eq!(a, Action::Policy);
    }
}
