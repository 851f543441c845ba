//! Capture records (docs/FORMAT.md, "Capture records"): what a crashed daemon
//! leaves in `incoming/` is sealed at the next mount from its line in
//! `captures` (format 4) or its `.cap` file (format 3), a torn line costs only
//! its own capture, and `captures` is emptied once nothing is left to seal.

mod common;
use ckptfs::store::hex;
use common::*;
use std::io::Write;

/// A capture record as FORMAT.md gives it.
fn record(rel: &str, content: &[u8], t: i64) -> serde_json::Value {
    serde_json::json!({
        "path_hex": hex(rel.as_bytes()), "reason": "close", "sealed_ns": t,
        "mtime_ns": t, "size": content.len(), "mode": 0o644, "uid": 0, "gid": 0,
        "writer": null, "copied": true
    })
}

#[test]
fn a_crash_s_captures_are_sealed_from_the_log_and_from_cap_files() {
    if !can_mount() {
        return;
    }
    bounded(120, || {
        let mut m = Mount::new(
            "caplog",
            Opts {
                mountpoint: true,
                config: Some(r#"{ "autosave": { "settle_ms": 0 } }"#.into()),
                ..Opts::default()
            },
        );
        std::fs::write(m.p("a.bin"), b"a: first state").unwrap();
        m.wait_sealed();
        let store = m.store();
        let log = store.join("captures");
        assert_eq!(
            std::fs::metadata(&log).unwrap().len(),
            0,
            "captures is emptied once everything is sealed"
        );
        m.crash();
        // What a daemon killed between capture and seal leaves: objects in
        // incoming/, their records in `captures` (one after a torn line) and,
        // from a format-3 daemon, in a `.cap` file.
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as i64;
        let inc = store.join("incoming");
        let a2 = b"a: second state, captured, never sealed".to_vec();
        let b1 = b"b: only state, captured, never sealed".to_vec();
        let c1 = b"c: format-3 record".to_vec();
        let torn = b"d: its record was torn".to_vec();
        std::fs::write(inc.join(format!("{t:x}-1-0")), &a2).unwrap();
        std::fs::write(inc.join(format!("{t:x}-1-1")), &b1).unwrap();
        std::fs::write(inc.join(format!("{t:x}-1-2")), &c1).unwrap();
        std::fs::write(inc.join(format!("{t:x}-1-3")), &torn).unwrap();
        let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
        let line = |name: String, rec: serde_json::Value| {
            format!("\n{}\n", serde_json::json!({ "name": name, "cap": rec }))
        };
        let whole = line(format!("{t:x}-1-3"), record("d.bin", &torn, t + 3));
        f.write_all(&whole.as_bytes()[..whole.len() / 2]).unwrap();
        f.write_all(line(format!("{t:x}-1-0"), record("a.bin", &a2, t)).as_bytes())
            .unwrap();
        f.write_all(line(format!("{t:x}-1-1"), record("b.bin", &b1, t + 1)).as_bytes())
            .unwrap();
        drop(f);
        std::fs::write(
            inc.join(format!("{t:x}-1-2.cap")),
            record("c.bin", &c1, t + 2).to_string(),
        )
        .unwrap();
        m.mount();
        m.wait_sealed();
        let contents = |rel: &str| -> Vec<Vec<u8>> {
            versions_of(&m, rel)
                .iter()
                .map(|e| std::fs::read(m.p(".versions").join(rel).join(e)).unwrap())
                .collect()
        };
        assert_eq!(
            contents("a.bin"),
            vec![b"a: first state".to_vec(), a2],
            "a.bin: its sealed version, then the one recovered from captures"
        );
        assert_eq!(contents("b.bin"), vec![b1]);
        assert_eq!(contents("c.bin"), vec![c1], "the format-3 .cap record");
        assert!(contents("d.bin").is_empty(), "a torn record seals nothing");
        // Its object waits for `verify`, which names it; the rest is gone.
        let left: Vec<String> = std::fs::read_dir(&inc)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            left,
            vec![format!("{t:x}-1-3")],
            "incoming/ after the seals"
        );
        assert_eq!(std::fs::metadata(&log).unwrap().len(), 0);
        m.unmount();
    });
}
