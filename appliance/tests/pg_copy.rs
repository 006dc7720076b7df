//! Issue 11: `COPY ... FROM STDIN` through the real `psql` (inline data after `COPY ...;`
//! and `\copy`) against the real `mantisd`: text and CSV (quoting, NULLs, HEADER), a row and
//! a columnar table, a bad row in the middle (nothing written, SQLSTATE and line reported),
//! COPY inside BEGIN refused, and over raw sockets CopyFail and an oversized CopyData frame.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{require_tool, Daemon, Options, IO_TIMEOUT};

/// Runs psql (unaligned output, verbose errors) with `script` on stdin; returns stdout + stderr.
fn psql(d: &Daemon, script: &str) -> String {
    let mut child = Command::new("psql")
        .args([
            "-X",
            "-w",
            "-h",
            "127.0.0.1",
            "-U",
            "mantis",
            "-d",
            "mantis",
        ])
        .args(["-A", "-p", &d.pg.port().to_string()])
        .env("PGCONNECT_TIMEOUT", "10")
        .env_remove("PGPASSWORD")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("psql runs");
    let script = format!("\\set VERBOSITY verbose\n{script}");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    let deadline = Instant::now() + IO_TIMEOUT;
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "psql hung on: {script}");
        std::thread::sleep(Duration::from_millis(10));
    }
    let out = child.wait_with_output().unwrap();
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn assert_has(out: &str, needle: &str) {
    assert!(out.contains(needle), "missing {needle:?} in:\n{out}");
}

fn start(opts: Options) -> Daemon {
    require_tool("psql");
    Daemon::start(opts)
}

#[test]
fn psql_copy_text_and_csv_into_row_and_columnar_tables() {
    let d = start(Options::default());
    let out = psql(
        &d,
        "CREATE TABLE t (id int PRIMARY KEY, name text, score double precision);\n\
         COPY t FROM STDIN;\n\
         1\tann\t1.5\n\
         2\t\\N\t2.5\n\
         3\ttab\\there\t\\N\n\
         \\.\n\
         \\copy t (id, name) from stdin with (format csv, header)\n\
         id,name\n\
         4,\"a,b\"\n\
         5,\"say \"\"hi\"\"\"\n\
         6,\n\
         7,\"\"\n\
         \\.\n\
         SELECT id, coalesce(name, '<null>') AS n, score FROM t ORDER BY id;\n\
         CREATE TABLE c (id bigint, g int, cat text) WITH (storage = 'columnar');\n\
         COPY c FROM STDIN WITH (FORMAT csv, DELIMITER ';', NULL 'NA');\n\
         1;1;x\n\
         2;2;NA\n\
         3;1;\"NA\"\n\
         \\.\n\
         SELECT g, count(*), count(cat), sum(id) FROM c GROUP BY g ORDER BY g;\n",
    );
    assert_eq!(out.matches("COPY 3").count(), 2, "{out}");
    assert_has(&out, "COPY 4");
    for row in [
        "\n1|ann|1.5\n",
        "\n2|<null>|2.5\n",
        "\n3|tab\there|\n",
        "\n4|a,b|\n",
        "\n5|say \"hi\"|\n",
        "\n6|<null>|\n",
        "\n7||\n",
        "(7 rows)",
        "\n1|2|2|4\n",
        "\n2|1|0|2\n",
    ] {
        assert_has(&out, row);
    }
    assert!(!out.contains("ERROR"), "{out}");
}

#[test]
fn psql_copy_with_a_bad_row_in_the_middle_writes_nothing() {
    let d = start(Options::default());
    let out = psql(
        &d,
        "CREATE TABLE t (id int PRIMARY KEY, v int NOT NULL);\n\
         CREATE TABLE c (id bigint, v int NOT NULL) WITH (storage = 'columnar');\n\
         COPY t FROM STDIN;\n\
         1\t10\n\
         2\tnope\n\
         3\t30\n\
         \\.\n\
         SELECT 'rows in t: ' || count(*) FROM t;\n\
         \\copy c from stdin with csv\n\
         1,1\n\
         2,\n\
         \\.\n\
         SELECT 'rows in c: ' || count(*) FROM c;\n\
         COPY t FROM STDIN;\n\
         1\t1\n\
         1\t2\n\
         \\.\n\
         BEGIN;\n\
         COPY t FROM STDIN;\n\
         ROLLBACK;\n\
         SELECT 'still ' || count(*) FROM t;\n",
    );
    assert_has(
        &out,
        "ERROR:  22P02: invalid input syntax for type integer: \"nope\"",
    );
    assert_has(&out, "COPY t, line 2, column v: \"nope\"");
    assert_has(&out, "rows in t: 0");
    assert_has(&out, "ERROR:  23502");
    assert_has(&out, "rows in c: 0");
    assert_has(&out, "ERROR:  23505");
    assert_has(
        &out,
        "ERROR:  25001: COPY FROM cannot run inside a transaction block",
    );
    assert_has(&out, "still 0");
}

fn frame(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    out.extend_from_slice(&(body.len() as i32 + 4).to_be_bytes());
    out.extend_from_slice(body);
    out
}

/// Connects and completes a trusted startup; returns the stream after ReadyForQuery.
fn raw_ready(d: &Daemon) -> TcpStream {
    let mut s = TcpStream::connect(d.pg).unwrap();
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    let mut body = 196_608i32.to_be_bytes().to_vec();
    body.extend_from_slice(b"user\0mantis\0\0");
    let mut pkt = ((body.len() + 4) as i32).to_be_bytes().to_vec();
    pkt.extend_from_slice(&body);
    s.write_all(&pkt).unwrap();
    read_until_ready(&mut s);
    s
}

/// Backend messages up to and including ReadyForQuery (or the server closing).
fn read_until_ready(s: &mut TcpStream) -> Vec<(u8, Vec<u8>)> {
    let mut msgs = Vec::new();
    loop {
        let mut head = [0u8; 5];
        if s.read_exact(&mut head).is_err() {
            return msgs;
        }
        let len = i32::from_be_bytes(head[1..5].try_into().unwrap()) as usize;
        let mut body = vec![0u8; len - 4];
        s.read_exact(&mut body).unwrap();
        let done = head[0] == b'Z';
        msgs.push((head[0], body));
        if done {
            return msgs;
        }
    }
}

/// Sends `COPY ...` and reads up to the CopyInResponse.
fn copy_start(s: &mut TcpStream, sql: &str) {
    s.write_all(&frame(b'Q', format!("{sql}\0").as_bytes()))
        .unwrap();
    let mut head = [0u8; 5];
    s.read_exact(&mut head).unwrap();
    let mut body = vec![0u8; i32::from_be_bytes(head[1..5].try_into().unwrap()) as usize - 4];
    s.read_exact(&mut body).unwrap();
    assert_eq!(head[0], b'G', "CopyInResponse expected: {body:?}");
}

fn count(s: &mut TcpStream, table: &str) -> String {
    s.write_all(&frame(
        b'Q',
        format!("SELECT count(*) FROM {table}\0").as_bytes(),
    ))
    .unwrap();
    let msgs = read_until_ready(s);
    let row = msgs.iter().find(|(t, _)| *t == b'D').expect("a row");
    String::from_utf8_lossy(&row.1[6..]).into_owned()
}

#[test]
fn copy_fail_and_oversized_frames_write_nothing() {
    let d = start(Options {
        extra_args: [
            "--value-bytes-max",
            "524288",
            "--request-bytes-max",
            "1048576",
        ]
        .map(String::from)
        .to_vec(),
        ..Options::default()
    });
    let mut s = raw_ready(&d);
    s.write_all(&frame(b'Q', b"CREATE TABLE t (id int)\0"))
        .unwrap();
    read_until_ready(&mut s);
    // Data split mid-row across frames, then CopyDone.
    copy_start(&mut s, "COPY t FROM STDIN");
    s.write_all(&frame(b'd', b"1\n2")).unwrap();
    s.write_all(&frame(b'd', b"2\n")).unwrap();
    s.write_all(&frame(b'c', b"")).unwrap();
    let msgs = read_until_ready(&mut s);
    assert_eq!(msgs[0].0, b'C');
    assert_eq!(&msgs[0].1, b"COPY 2\0");
    // CopyFail: 57014, nothing written.
    copy_start(&mut s, "COPY t FROM STDIN");
    s.write_all(&frame(b'd', b"3\n")).unwrap();
    s.write_all(&frame(b'f', b"client gave up\0")).unwrap();
    let msgs = read_until_ready(&mut s);
    assert_eq!(msgs[0].0, b'E');
    let e = String::from_utf8_lossy(&msgs[0].1).into_owned();
    assert!(e.contains("57014") && e.contains("client gave up"), "{e}");
    assert_eq!(count(&mut s, "t"), "2");
    // A CopyData frame over the message limit ends the connection before it is buffered.
    copy_start(&mut s, "COPY t FROM STDIN");
    s.write_all(&frame(b'd', b"4\n")).unwrap();
    let mut big = vec![b'd'];
    big.extend_from_slice(&(2_000_000i32).to_be_bytes());
    s.write_all(&big).unwrap();
    let msgs = read_until_ready(&mut s);
    let e = msgs.iter().find(|(t, _)| *t == b'E').expect("an error");
    assert!(
        String::from_utf8_lossy(&e.1).contains("exceeds the limit"),
        "{msgs:?}"
    );
    let mut s = raw_ready(&d);
    assert_eq!(count(&mut s, "t"), "2");
}
