//! `funnel decode --serial` on a live link: a pseudo-terminal stands in for the device's UART,
//! fed with the shipped model's frames in small bursts.

#![cfg(unix)]

use std::ffi::CStr;
use std::fs::File;
use std::io::Write;
use std::os::fd::FromRawFd;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use funnel::codec::simulate;
use funnel::pipeline::recording_counts;
use funnel_artifacts::ModelDir;
use funnel_shared::stream::StreamConfig;

/// A raw-mode pty pair: the master (the "device" side) and the slave's path (the port).
fn pty() -> (File, File, String) {
    let (mut master, mut slave) = (0, 0);
    let mut name = [0 as libc::c_char; 128];
    // SAFETY: out-pointers to live locals; the name buffer is larger than any pty path.
    unsafe {
        assert_eq!(
            libc::openpty(&mut master, &mut slave, name.as_mut_ptr(), std::ptr::null(), std::ptr::null()),
            0,
            "openpty"
        );
        let mut t: libc::termios = std::mem::zeroed();
        assert_eq!(libc::tcgetattr(slave, &mut t), 0);
        libc::cfmakeraw(&mut t);
        assert_eq!(libc::tcsetattr(slave, libc::TCSANOW, &t), 0);
        let path = CStr::from_ptr(name.as_ptr()).to_str().unwrap().to_string();
        (File::from_raw_fd(master), File::from_raw_fd(slave), path)
    }
}

/// The shipped model and the bytes it sends for the first `frames` windows of the ECG.
/// The shipped model, the first `frames` one-window frames of the ECG as it sends them, and its
/// window.
fn shipped_stream(frames: usize) -> (std::path::PathBuf, Vec<u8>, usize) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let model = root.join("models/ecg");
    let counts = recording_counts(&model, &root.join("data/mitbih208_ecg.csv"), &["ecg_mlii_mV".to_string()]).unwrap();
    let blob = ModelDir::new(&model).load_blob().unwrap();
    let window = blob.window();
    let stream = simulate(&blob, &counts[..frames * window], StreamConfig::DEFAULT).unwrap().bytes;
    (model, stream, window)
}

/// `funnel decode --model <model> --serial <port> <extra…> --out <csv>`, stderr captured.
fn spawn_decode(model: &Path, port: &str, extra: &[&str], csv: &Path) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_funnel"))
        .args(["decode", "--model", model.to_str().unwrap(), "--serial", port])
        .args(extra)
        .arg("--out")
        .arg(csv)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

#[test]
fn decode_reads_frames_from_a_serial_port() {
    let frames = 40;
    let (model, stream, window) = shipped_stream(frames);
    let (mut device, _keep_slave_open, port) = pty();
    let tmp = tempfile::tempdir().unwrap();
    let csv = tmp.path().join("live.csv");
    let child = spawn_decode(&model, &port, &["--baud", "115200", "--seconds", "4"], &csv);
    std::thread::sleep(Duration::from_millis(500));
    // A device that was already running: the reader joins at the tail of a frame, before any
    // stream header.
    device.write_all(&[0x42, 0x13, 0x37, 0x00]).unwrap();
    for burst in stream.chunks(97) {
        device.write_all(burst).unwrap();
        std::thread::sleep(Duration::from_millis(5));
    }
    let out = child.wait_with_output().unwrap();
    let report = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{report}");
    assert!(report.contains(&format!("{frames} frames ({frames} windows) decoded")), "{report}");
    assert!(report.contains("1 unusable byte run(s) (4 bytes)"), "{report}");
    assert!(report.contains("1 × before the first stream header"), "{report}");
    let rows = std::fs::read_to_string(&csv).unwrap().lines().count();
    assert_eq!(rows, 1 + frames * window);
}

#[test]
fn ctrl_c_ends_a_live_decode_with_everything_received_and_says_so() {
    let frames = 12;
    let (model, stream, window) = shipped_stream(frames);
    let (mut device, _keep_slave_open, port) = pty();
    let tmp = tempfile::tempdir().unwrap();
    let csv = tmp.path().join("live.csv");
    let child = spawn_decode(&model, &port, &[], &csv);
    std::thread::sleep(Duration::from_millis(500));
    device.write_all(&stream).unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    // SAFETY: sends SIGINT to the child we spawned.
    assert_eq!(unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) }, 0);
    let out = child.wait_with_output().unwrap();
    let report = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{report}");
    assert!(report.contains(&format!("{frames} frames ({frames} windows) decoded")), "{report}");
    assert!(report.contains("interrupted (Ctrl-C)"), "{report}");
    let text = std::fs::read_to_string(&csv).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1 + frames * window + 1, "every row, then the mark");
    assert_eq!(*lines.last().unwrap(), format!("{},,interrupted", frames * window));
    assert!(text.ends_with('\n'), "the output ends on a whole line");
}
