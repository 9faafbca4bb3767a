use super::*;
use crate::codec::Codec;
use crate::container::SectionKind;

struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("oxjob-store-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn put(store: &Store, func: &str, key: &str, payload: &[u8]) -> PutOutcome {
    let sections = [
        Section {
            kind: SectionKind::Pickle,
            data: b"stream",
        },
        Section {
            kind: SectionKind::Buffer,
            data: payload,
        },
    ];
    let opts = WriteOptions {
        codec: Codec::Raw,
        level: 0,
        threads: 1,
    };
    store.put(func, key, &sections, &opts, b"{}").expect("put")
}

fn set_access(store: &Store, func: &str, key: &str, secs_ago: u64) {
    let path = store.entry_dir(func, key).expect("dir").join(OUTPUT);
    let when = SystemTime::now() - Duration::from_secs(secs_ago);
    let file = File::options().write(true).open(path).expect("open");
    file.set_times(FileTimes::new().set_accessed(when).set_modified(when))
        .expect("times");
    let meta = File::options()
        .write(true)
        .open(store.entry_dir(func, key).expect("dir").join(METADATA))
        .expect("open");
    meta.set_times(FileTimes::new().set_modified(when))
        .expect("times");
}

#[test]
fn put_get_remove() {
    let dir = TempDir::new("basic");
    let store = Store::new(&dir.0);
    assert!(store.get("m/f", "k1", 1).expect("get").is_none());
    assert!(matches!(
        put(&store, "m/f", "k1", &[1, 2, 3]),
        PutOutcome::Stored(_)
    ));
    assert!(store.contains("m/f", "k1"));
    let got = store.get("m/f", "k1", 1).expect("get").expect("hit");
    assert_eq!(got[0], b"stream"[..]);
    assert_eq!(got[1], vec![1u8, 2, 3]);
    // A newer result replaces the entry: the next read returns it.
    assert!(matches!(
        put(&store, "m/f", "k1", &[9]),
        PutOutcome::Replaced(_)
    ));
    assert_eq!(
        store.get("m/f", "k1", 1).expect("get").expect("hit")[1],
        vec![9u8]
    );
    store.remove("m/f", "k1").expect("remove");
    assert!(!store.contains("m/f", "k1"));
    let leftovers: Vec<_> = fs::read_dir(dir.0.join("m/f")).expect("ls").collect();
    assert!(leftovers.is_empty(), "no work or trash directory left");
}

#[test]
fn paths_cannot_escape_the_store() {
    let dir = TempDir::new("escape");
    let store = Store::new(&dir.0);
    for bad in ["../x", "/etc", "a/../../b", ""] {
        assert!(
            matches!(store.entry_dir(bad, "k"), Err(Error::Invalid(_))),
            "{bad}"
        );
        assert!(
            matches!(store.entry_dir("m/f", bad), Err(Error::Invalid(_))),
            "{bad}"
        );
    }
}

#[test]
fn corrupt_entry_is_reported() {
    let dir = TempDir::new("corrupt");
    let store = Store::new(&dir.0);
    put(&store, "m/f", "k", &[5u8; 100]);
    let path = store.entry_dir("m/f", "k").expect("dir").join(OUTPUT);
    let mut bytes = fs::read(&path).expect("read");
    let last = bytes.len() - 30;
    bytes[last] ^= 1;
    fs::write(&path, bytes).expect("write");
    assert!(matches!(store.get("m/f", "k", 1), Err(Error::Corrupt(_))));
}

#[test]
fn reduce_evicts_least_recently_used_first() {
    let dir = TempDir::new("lru");
    let store = Store::new(&dir.0);
    for (key, age) in [("old", 300), ("mid", 200), ("new", 100)] {
        put(&store, "m/f", key, &[0u8; 1000]);
        set_access(&store, "m/f", key, age);
    }
    // Reading "old" makes it the most recently used.
    store.get("m/f", "old", 1).expect("get");
    let removed = store
        .reduce(&Limits {
            items: Some(2),
            ..Limits::default()
        })
        .expect("reduce");
    assert_eq!(
        removed.iter().map(|e| e.key.as_str()).collect::<Vec<_>>(),
        ["mid"]
    );
    let per_entry = store.entries().expect("ls")[0].bytes;
    let removed = store
        .reduce(&Limits {
            bytes: Some(per_entry + 10),
            ..Limits::default()
        })
        .expect("reduce");
    assert_eq!(
        removed.iter().map(|e| e.key.as_str()).collect::<Vec<_>>(),
        ["new"]
    );
    assert_eq!(store.entries().expect("ls").len(), 1);
}

#[test]
fn reduce_by_age() {
    let dir = TempDir::new("age");
    let store = Store::new(&dir.0);
    put(&store, "a/f", "stale", &[1]);
    set_access(&store, "a/f", "stale", 3600);
    put(&store, "b/g", "fresh", &[1]);
    let removed = store
        .reduce(&Limits {
            age: Some(Duration::from_secs(60)),
            ..Limits::default()
        })
        .expect("reduce");
    assert_eq!(removed.len(), 1);
    assert_eq!(removed[0].func_id, "a/f");
    assert!(store.contains("b/g", "fresh"));
}

#[test]
fn stale_work_directories_are_cleaned() {
    let dir = TempDir::new("stale");
    let store = Store::new(&dir.0);
    put(&store, "m/f", "k", &[1]);
    let work = dir.0.join("m/f/.tmp-k-1-1");
    fs::create_dir_all(&work).expect("mkdir");
    let old = SystemTime::now() - STALE_AFTER - Duration::from_secs(5);
    File::open(&work)
        .and_then(|f| f.set_times(FileTimes::new().set_modified(old)))
        .expect("times");
    let fresh = dir.0.join("m/f/.tmp-k-2-2");
    fs::create_dir_all(&fresh).expect("mkdir");
    assert_eq!(store.entries().expect("ls").len(), 1);
    assert!(!work.exists(), "a dead writer's directory is removed");
    assert!(fresh.exists(), "a live writer's directory is kept");
}

#[test]
fn clear_function_or_everything() {
    let dir = TempDir::new("clear");
    let store = Store::new(&dir.0);
    put(&store, "m/f", "a", &[1]);
    put(&store, "m/g", "b", &[1]);
    assert_eq!(store.clear(Some("m/f")).expect("clear"), 1);
    assert!(!store.contains("m/f", "a") && store.contains("m/g", "b"));
    assert_eq!(store.clear(None).expect("clear"), 1);
    assert!(store.entries().expect("ls").is_empty());
    assert!(!dir.0.join("m").exists(), "emptied directories go");
}

#[test]
fn clear_and_walks_leave_what_is_not_the_stores() {
    let dir = TempDir::new("foreign");
    let store = Store::new(&dir.0);
    put(&store, "m/f", "a", &[1]);
    // A user's files: beside entries, inside an entry-like directory, hidden.
    fs::write(dir.0.join("m/f/notes.txt"), b"mine").expect("write");
    fs::create_dir_all(dir.0.join("m/f/b")).expect("mkdir");
    fs::write(dir.0.join("m/f/b").join(OUTPUT), b"mine").expect("write");
    fs::write(dir.0.join("m/f/b/extra"), b"mine").expect("write");
    let git = dir.0.join(".git");
    fs::create_dir_all(&git).expect("mkdir");
    let old = SystemTime::now() - STALE_AFTER - Duration::from_secs(5);
    File::open(&git)
        .and_then(|f| f.set_times(FileTimes::new().set_modified(old)))
        .expect("times");
    fs::create_dir_all(dir.0.join("empty")).expect("mkdir");
    assert_eq!(store.entries().expect("ls").len(), 1);
    assert_eq!(store.clear(None).expect("clear"), 1);
    store.remove("m/f", "b").expect("remove");
    for kept in [
        "m/f/notes.txt",
        "m/f/b/extra",
        "m/f/b/output.oxjob",
        ".git",
        "empty",
    ] {
        assert!(dir.0.join(kept).exists(), "{kept} was removed");
    }
    assert!(!store.contains("m/f", "a"));
}

#[test]
fn bounds_hold_exactly_with_one_writer_and_walk_rarely() {
    let dir = TempDir::new("tally");
    let store = Store::new(&dir.0);
    let limits = Limits {
        items: Some(40),
        ..Limits::default()
    };
    let mut walks = 0;
    for i in 0..200 {
        let outcome = put(&store, "m/f", &format!("k{i}"), &[1]);
        let before = store.tally.lock().expect("tally").puts;
        store.after_put(outcome.bytes(), &limits).expect("bound");
        if store.tally.lock().expect("tally").puts <= before {
            walks += 1;
        }
        assert!(store.entries().expect("ls").len() <= 40);
    }
    // Past 40 entries a crossing evicts down to 35: a walk per ~5 writes, not one each.
    assert!(walks < 100, "{walks} walks for 200 writes");
}
