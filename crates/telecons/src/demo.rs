//! `telecons demo`: the service on its embedded defaults — SQLite and an in-process Kaleyra
//! simulator on a loopback port — for trying it without a Kaleyra account.
//!
//! The simulator keeps its users and rooms in memory, so the demo starts from a fresh
//! database each run (`telecons-demo.db`, replaced at start): the two always agree, and a
//! restarted demo gives links at once. It never uses `DATABASE_URL` (which names what `serve`
//! uses); `--database-url` names another database, used as it is.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;

use anyhow::Context;
use kaleyra_sim::SimOptions;
use secrecy::SecretString;

use crate::app::{self, Application, Dependencies};
use crate::config::{Config, DatabaseUrl, KaleyraSettings};
use crate::store::InstallationMode;

/// The demo's own database, in the working directory.
pub const DEMO_DATABASE_FILE: &str = "telecons-demo.db";

/// Locked while a demo runs on its own database in this directory: a second demo started
/// there refuses to start instead of replacing the running one's database. The file stays
/// (removing it could let two demos lock two different files); the lock goes with the
/// process, however it ends.
pub const DEMO_LOCK_FILE: &str = "telecons-demo.lock";

/// Runs until SIGTERM/SIGINT. Any configured Kaleyra is ignored: the demo never calls out.
/// `database_url` overrides the demo's own fresh database.
pub async fn run(mut config: Config, database_url: Option<String>) -> anyhow::Result<()> {
    let fresh = database_url.is_none();
    // Held until the demo stops.
    let mut _running = None;
    let url = match database_url {
        Some(url) => url,
        None => {
            _running = Some(lock_demo_directory(Path::new(DEMO_LOCK_FILE))?);
            remove_database_files(Path::new(DEMO_DATABASE_FILE))?;
            format!("sqlite://{DEMO_DATABASE_FILE}")
        }
    };
    config.database_url = DatabaseUrl::parse(&url)
        .context("--database-url must start with sqlite: (e.g. sqlite://demo.db) or postgres://")?;
    // A fresh key per run: the simulator only has to agree with our client.
    let api_key = format!("demo-{:032x}", rand::random::<u128>());
    // Its links lead to its own stand-in page for a call, which a browser here can open.
    let simulator = kaleyra_sim::spawn_with(&api_key, SimOptions::default().links_to_itself())
        .await
        .context("cannot start the embedded Kaleyra simulator")?;
    // The waiting-room page frames those links.
    config.link_origins = vec![simulator.base_url().to_owned()];
    config.kaleyra = Some(KaleyraSettings {
        base_url: simulator.base_url().to_owned(),
        api_key: SecretString::from(api_key),
    });
    let banner = Banner {
        storage: config.database_url.to_string(),
        fresh,
        user_header: config.headers.user_id.clone(),
        groups_header: config.headers.groups.clone(),
        simulator: simulator.base_url().to_owned(),
    };
    // Loopback only: the demo is for the machine it runs on.
    let deps = Dependencies {
        address: IpAddr::V4(Ipv4Addr::LOCALHOST),
        mode: InstallationMode::Demo,
        ..Dependencies::default()
    };
    let application = Application::build(config, deps).await?;
    // Listening for signals before the banner says how to stop.
    let shutdown = app::shutdown_signal();
    println!("{}", banner.render(application.address()?));
    application.run_until_stopped(shutdown).await
}

/// Takes the lock of the demo's own database in this directory (see [`DEMO_LOCK_FILE`]).
fn lock_demo_directory(path: &Path) -> anyhow::Result<std::fs::File> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => anyhow::bail!(
            "another `telecons demo` is running in this directory (it holds {}): its database \
             {DEMO_DATABASE_FILE} is left alone; stop that demo first (Ctrl-C), or start this \
             one in another directory",
            path.display()
        ),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("cannot lock {}", path.display()))
        }
    }
}

/// Removes a SQLite database and its journal files, if they exist.
fn remove_database_files(path: &Path) -> anyhow::Result<()> {
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let file = format!("{}{suffix}", path.display());
        match std::fs::remove_file(&file) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("cannot replace {file}")),
        }
    }
    Ok(())
}

/// What the demo prints: where things are, then a walkthrough to paste into a shell.
struct Banner {
    /// The database URL, its password masked.
    storage: String,
    fresh: bool,
    user_header: String,
    groups_header: String,
    simulator: String,
}

impl Banner {
    fn render(&self, address: SocketAddr) -> String {
        let base = format!("http://{address}");
        let storage_note = if self.fresh {
            "a fresh database each run, like the simulator's memory"
        } else {
            "as given by --database-url"
        };
        let Banner {
            storage,
            user_header,
            groups_header,
            simulator,
            ..
        } = self;
        format!(
            r#"telecons demo: listening on {base}
  storage:            {storage}  ({storage_note})
  Kaleyra simulator:  {simulator}  (in memory; its rooms: {simulator}/_sim/rooms)
  OpenAPI document:   {base}/documentation/json

Try it: paste these lines into a shell. Every answer ends with its HTTP status.

# 1. Book a teleconsultation that starts in two minutes (GNU date, else BSD date):
START=$(date -u -d '+2 minutes' +%Y-%m-%dT%H:%M:%SZ 2>/dev/null || date -u -v+2M +%Y-%m-%dT%H:%M:%SZ)
ANSWER=$(curl -s -w '\nHTTP %{{http_code}}' -X POST {base}/teleconsultation \
  -H 'content-type: application/json' -d '{{
  "participants": {{"number": 2, "data": [
    {{"userId": "doctor-1",  "groups": ["doctor"],  "fullName": "Dr. Maria Rossi", "language": "it"}},
    {{"userId": "patient-1", "groups": ["patient"], "fullName": "Luca Bianchi",    "language": "en"}}]}},
  "start_date": "'"$START"'", "duration_in_seconds": 1800}}'); echo "$ANSWER"
ROOM=$(echo "$ANSWER" | sed -n 's/.*"roomId":"\([0-9a-f]*\)".*/\1/p')
echo "roomId: ${{ROOM:-none, the booking failed (see its answer above)}}"
# 2. Each participant's waiting-room page: open it in a browser on this machine. It counts
#    down to the start, then offers Join. (The demo, and only the demo, takes the participant
#    from ?as=; behind a gateway the page is identified like any API call.) Join opens the
#    participant's link, which points at the built-in Kaleyra simulator's stand-in page for a
#    call ({simulator}/_sim/call/...), not at a real video call.
echo "doctor-1:  {base}/join/$ROOM?as=doctor-1"
echo "patient-1: {base}/join/$ROOM?as=patient-1"
# 3. The patient asks for its join link itself (accessLinkURL: null until the start, then
#    the link):
curl -s -w '\nHTTP %{{http_code}}\n' {base}/teleconsultation/$ROOM -H '{user_header}: patient-1'

# Then try:
# - move the start (refused from the start on: the links are out by then); the pages follow:
LATER=$(date -u -d '+4 minutes' +%Y-%m-%dT%H:%M:%SZ 2>/dev/null || date -u -v+4M +%Y-%m-%dT%H:%M:%SZ)
curl -s -w 'HTTP %{{http_code}}\n' -X PATCH {base}/teleconsultation/$ROOM \
  -H 'content-type: application/json' -d '{{"start_date": "'"$LATER"'"}}'
# - book for three and add the third participant later (the room is made once all are known):
ANSWER=$(curl -s -w '\nHTTP %{{http_code}}' -X POST {base}/teleconsultation \
  -H 'content-type: application/json' -d '{{
  "participants": {{"number": 3, "data": [
    {{"userId": "doctor-1",  "groups": ["doctor"],  "fullName": "Dr. Maria Rossi", "language": "it"}},
    {{"userId": "patient-1", "groups": ["patient"], "fullName": "Luca Bianchi",    "language": "en"}}]}},
  "start_date": "'"$LATER"'", "duration_in_seconds": 1800}}'); echo "$ANSWER"
ROOM3=$(echo "$ANSWER" | sed -n 's/.*"roomId":"\([0-9a-f]*\)".*/\1/p')
curl -s -w 'HTTP %{{http_code}}\n' -X POST {base}/teleconsultation/$ROOM3/participants/data \
  -H 'content-type: application/json' \
  -d '{{"userId": "patient-2", "groups": ["patient"], "fullName": "Anna Verdi", "language": "it"}}'
echo "patient-2: {base}/join/$ROOM3?as=patient-2"
# - a Kaleyra SDK token for the doctor, as a mobile app asks for one:
curl -s -w '\nHTTP %{{http_code}}\n' -X POST {base}/credentials \
  -H '{user_header}: doctor-1' -H '{groups_header}: doctor'
# - every route, with its bodies and answers: the OpenAPI document at {base}/documentation/json
# - cancel the first booking (its room is deleted; its pages say it was cancelled):
curl -s -w 'HTTP %{{http_code}}\n' -X DELETE {base}/teleconsultation/$ROOM

Stop with Ctrl-C."#
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_banner_masks_nothing_it_does_not_have_and_ends_each_answer_with_its_status() {
        let banner = Banner {
            storage: "sqlite://telecons-demo.db".into(),
            fresh: true,
            user_header: "miauserid".into(),
            groups_header: "miausergroups".into(),
            simulator: "http://127.0.0.1:9".into(),
        };
        let text = banner.render(SocketAddr::from(([127, 0, 0, 1], 3000)));
        if std::env::var_os("SHOW_BANNER").is_some() {
            println!("{text}");
        }
        assert!(
            text.contains("listening on http://127.0.0.1:3000"),
            "{text}"
        );
        assert!(text.contains("a fresh database each run"), "{text}");
        assert!(text.contains("-H 'miauserid: patient-1'"), "{text}");
        assert_eq!(
            text.matches("curl ").count(),
            text.matches("curl -s -w '").count(),
            "every curl shows its status"
        );
        assert!(
            text.contains("echo \"patient-1: http://127.0.0.1:3000/join/$ROOM?as=patient-1\""),
            "{text}"
        );
        assert!(
            text.contains("echo \"doctor-1:  http://127.0.0.1:3000/join/$ROOM?as=doctor-1\""),
            "{text}"
        );
        assert!(text.contains("-H 'miausergroups: doctor'"), "{text}");
        assert!(text.contains("http://127.0.0.1:9/_sim/call/"), "{text}");
        assert!(!text.contains("tee "), "{text}");
        assert!(
            text.contains("points at the built-in Kaleyra simulator"),
            "{text}"
        );
    }

    #[test]
    fn one_demo_at_a_time_holds_the_directory() {
        let dir = tempfile::tempdir().unwrap();
        let lock = dir.path().join(DEMO_LOCK_FILE);
        let first = lock_demo_directory(&lock).unwrap();
        let refused = lock_demo_directory(&lock).unwrap_err().to_string();
        assert!(
            refused.contains("another `telecons demo` is running"),
            "{refused}"
        );
        drop(first);
        lock_demo_directory(&lock).expect("free once the first demo stops");
    }

    #[test]
    fn the_demo_database_is_replaced_with_its_journal() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("demo.db");
        for suffix in ["", "-wal", "-shm"] {
            std::fs::write(format!("{}{suffix}", db.display()), b"old").unwrap();
        }
        remove_database_files(&db).unwrap();
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        remove_database_files(&db).expect("nothing to remove is fine");
    }
}
