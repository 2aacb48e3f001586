//! `funnel gateway` and `funnel decode --mqtt` through a real broker: `mosquitto` (the Debian
//! package; `.ci/run` installs it) on a loopback port, devices simulated with the shipped model
//! publishing their frames — one through the gateway, the others straight to the broker with
//! frames lost, reordered and delivered twice — and one receiver decoding them all at once.

use std::collections::BTreeSet;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use funnel::codec::simulate;
use funnel::pipeline::{
    decode_mqtt, recording_counts, run_gateway, BrokerAddress, GatewayRequest, LinkItem, LinkSplitter,
    MqttDecodeOutcome, MqttDecodeRequest, OutputFormat, Source,
};
use funnel::runtime::Backend;
use funnel_artifacts::ModelDir;
use funnel_shared::stream::StreamConfig;
use funnel_shared::wire::CorruptKind;
use rumqttc::{Client, Event, MqttOptions, Packet, QoS};

/// Windows per frame of the simulated devices (small frames: many of them).
const WINDOWS_PER_FRAME: u8 = 4;
/// Frames each device sends.
const FRAMES: usize = 24;

/// A `mosquitto` on a loopback port, stopped when dropped.
struct Broker {
    child: Child,
    port: u16,
    config: PathBuf,
}

impl Broker {
    fn start(dir: &Path, port: Option<u16>) -> Broker {
        let port = port.unwrap_or_else(|| TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port());
        let config = dir.join(format!("mosquitto-{port}.conf"));
        std::fs::write(&config, format!("listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"))
            .unwrap();
        // Debian puts it in /usr/sbin, which a user's PATH may not hold.
        let program = if Path::new("/usr/sbin/mosquitto").exists() { "/usr/sbin/mosquitto" } else { "mosquitto" };
        let child = Command::new(program)
            .arg("-c")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("these tests need the mosquitto broker (apt-get install mosquitto; .ci/run installs it)");
        let started = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(started.elapsed() < Duration::from_secs(10), "mosquitto did not listen on port {port}");
            std::thread::sleep(Duration::from_millis(50));
        }
        Broker { child, port, config }
    }

    fn address(&self) -> BrokerAddress {
        BrokerAddress { host: "127.0.0.1".into(), port: self.port }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.config);
    }
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn model() -> PathBuf {
    root().join("models/ecg")
}

/// Device `n`'s bytes: its own stretch of the ECG, `FRAMES` frames of `WINDOWS_PER_FRAME`
/// windows and a last frame of half a window.
fn device_stream(n: usize) -> Vec<u8> {
    let counts =
        recording_counts(&model(), &root().join("data/mitbih208_ecg.csv"), &["ecg_mlii_mV".to_string()]).unwrap();
    let blob = ModelDir::new(model()).load_blob().unwrap();
    let span = usize::from(WINDOWS_PER_FRAME) * blob.window();
    let samples = FRAMES * span + blob.window() / 2;
    let config = StreamConfig {
        windows_per_frame: WINDOWS_PER_FRAME,
        header_interval: 8,
        session: n as u16,
        ..StreamConfig::DEFAULT
    };
    simulate(&blob, &counts[n * samples..(n + 1) * samples], config).unwrap().bytes
}

fn items_of(bytes: &[u8]) -> Vec<LinkItem> {
    let mut splitter = LinkSplitter::new();
    let mut items = splitter.feed(bytes).unwrap();
    let (rest, report) = splitter.finish().unwrap();
    items.extend(rest);
    assert_eq!((report.frames_lost, report.dropped_bytes), (0, 0));
    items
}

/// Publishes `messages` in order on `topic` (QoS 1; the first, a header, retained) and waits
/// for the broker to acknowledge them all.
fn publish(broker: &BrokerAddress, topic: &str, messages: &[Vec<u8>]) {
    let options = MqttOptions::new(format!("test-{topic}"), &broker.host, broker.port);
    let (client, mut connection) = Client::new(options, 16);
    let sender = {
        let (client, topic, messages) = (client.clone(), topic.to_string(), messages.to_vec());
        std::thread::spawn(move || {
            for (i, m) in messages.into_iter().enumerate() {
                client.publish(&topic, QoS::AtLeastOnce, i == 0, m).unwrap();
            }
        })
    };
    let mut acked = 0;
    for event in connection.iter() {
        if let Event::Incoming(Packet::PubAck(_)) = event.expect("the broker is up") {
            acked += 1;
            if acked == messages.len() {
                break;
            }
        }
    }
    sender.join().unwrap();
    client.disconnect().unwrap();
}

/// The receiver, on every topic under `funnel/`, until nothing has arrived for `idle` seconds.
fn start_receiver(broker: &BrokerAddress, out: &Path, idle: f64) -> JoinHandle<anyhow::Result<MqttDecodeOutcome>> {
    let request = MqttDecodeRequest {
        model: model(),
        broker: broker.clone(),
        topic: "funnel/#".into(),
        out: out.to_path_buf(),
        format: OutputFormat::Csv,
        backend: Backend::Tract,
        seconds: Some(120.0),
        idle: Some(idle),
    };
    // As much stack as a program's main thread, where `funnel decode` runs it.
    std::thread::Builder::new().stack_size(8 << 20).spawn(move || decode_mqtt(&request)).unwrap()
}

/// Waits until the receiver has a file for each of `topics` (it creates one at a topic's first
/// message: the retained header is delivered when it subscribes).
fn wait_for_files(out: &Path, files: &[&str]) {
    let started = Instant::now();
    while !files.iter().all(|f| out.join(f).exists()) {
        assert!(started.elapsed() < Duration::from_secs(60), "the receiver did not subscribe");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The rows of a decoded CSV: (sample index, status).
fn rows(csv: &Path) -> Vec<(u64, String)> {
    let text = std::fs::read_to_string(csv).unwrap();
    text.lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (f[0].parse().unwrap(), f[f.len() - 1].to_string())
        })
        .collect()
}

#[test]
fn a_fleet_decodes_through_the_broker_with_each_device_s_losses_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let broker = Broker::start(tmp.path(), None);
    let address = broker.address();
    let streams: Vec<Vec<u8>> = (0..3).map(device_stream).collect();
    let items: Vec<Vec<LinkItem>> = streams.iter().map(|s| items_of(s)).collect();
    // Each device's first header, retained: the receiver gets it when it subscribes.
    for (name, items) in ["gw", "lossy", "twice"].iter().zip(&items) {
        assert!(items[0].header);
        publish(&address, &format!("funnel/{name}/0"), &[items[0].bytes.clone()]);
    }
    let out = tmp.path().join("out");
    let receiver = start_receiver(&address, &out, 2.0);
    wait_for_files(&out, &["funnel.gw.0.csv", "funnel.lossy.0.csv", "funnel.twice.0.csv"]);

    // Device "gw" through the gateway, from a capture of its link.
    let capture = tmp.path().join("gw.bin");
    std::fs::write(&capture, &streams[0]).unwrap();
    let gateway = run_gateway(&GatewayRequest {
        source: Source::File(capture),
        broker: address.clone(),
        topic: "funnel/{device}/{stream}".into(),
        device: "gw".into(),
    })
    .unwrap();
    assert_eq!((gateway.frames, gateway.unacknowledged, gateway.dropped_bytes), (FRAMES as u64 + 1, 0, 0));

    // Device "lossy": frame 5 lost, frames 9 and 10 swapped on the way.
    let frame_index: Vec<usize> = (0..items[1].len()).filter(|&i| !items[1][i].header).collect();
    let mut lossy: Vec<Vec<u8>> = items[1].iter().map(|i| i.bytes.clone()).collect();
    lossy.swap(frame_index[9], frame_index[10]);
    lossy.remove(frame_index[5]);
    publish(&address, "funnel/lossy/0", &lossy);
    // Device "twice": every fourth frame delivered twice (QoS 1 after a reconnection).
    let mut twice = Vec::new();
    for (k, item) in items[2].iter().enumerate() {
        twice.push(item.bytes.clone());
        if !item.header && k % 4 == 0 {
            twice.push(item.bytes.clone());
        }
    }
    publish(&address, "funnel/twice/0", &twice);

    let outcome = receiver.join().unwrap().unwrap();
    let topics: Vec<&str> = outcome.topics.iter().map(|t| t.topic.as_str()).collect();
    assert_eq!(topics, ["funnel/gw/0", "funnel/lossy/0", "funnel/twice/0"]);
    let blob = ModelDir::new(model()).load_blob().unwrap();
    let span = u64::from(WINDOWS_PER_FRAME) * blob.window() as u64;
    let samples = FRAMES as u64 * span + blob.window() as u64 / 2;
    for t in &outcome.topics {
        let r = &t.report;
        let rows = rows(&t.out);
        // Every sample once, in order: decoded, or marked missing.
        assert_eq!(rows.len() as u64, samples, "{}", t.topic);
        assert!(rows.iter().enumerate().all(|(i, (index, _))| *index == i as u64), "{}", t.topic);
        let missing: BTreeSet<u64> = rows.iter().filter(|(_, s)| s == "missing").map(|(i, _)| *i).collect();
        match t.topic.as_str() {
            "funnel/lossy/0" => {
                assert_eq!((r.frames, r.frames_lost), (FRAMES as u64, 1), "{}", r.summary());
                assert_eq!(missing, (5 * span..6 * span).collect(), "exactly frame 5's samples");
            }
            _ => {
                assert_eq!((r.frames, r.frames_lost, r.gaps.len()), (FRAMES as u64 + 1, 0, 0), "{}", r.summary());
                assert!(missing.is_empty());
            }
        }
        let repeated = r.corrupt.get(&CorruptKind::Repeated).copied().unwrap_or(0);
        let expected = if t.topic == "funnel/twice/0" {
            (0..items[2].len()).filter(|&k| !items[2][k].header && k % 4 == 0).count()
        } else {
            0
        };
        assert_eq!(repeated as usize, expected, "{}: duplicates dropped, never decoded twice", t.topic);
    }
    // The device through the gateway decodes as its capture does.
    let reference = tmp.path().join("reference.csv");
    let decoded = funnel::pipeline::decode_stream(&funnel::pipeline::DecodeRequest {
        model: model(),
        source: Source::File(tmp.path().join("gw.bin")),
        out: reference.clone(),
        backend: Backend::Tract,
        plot: None,
        stream: None,
    })
    .unwrap();
    assert_eq!(decoded[0].report.as_ref().unwrap().frames, FRAMES as u64 + 1);
    assert_eq!(rows(&reference), rows(&outcome.topics[0].out));
}

/// The broker stops mid-stream and comes back: the receiver reconnects and subscribes again, the
/// rest of the stream decodes, every frame is decoded or reported lost, and no sample is decoded
/// twice.
#[test]
fn a_broker_restart_mid_stream_decodes_nothing_twice() {
    let tmp = tempfile::tempdir().unwrap();
    let mut broker = Broker::start(tmp.path(), None);
    let (address, port) = (broker.address(), broker.port);
    let items = items_of(&device_stream(3));
    publish(&address, "funnel/restart/0", &[items[0].bytes.clone()]);
    let out = tmp.path().join("out");
    // Longer than the broker is down.
    let receiver = start_receiver(&address, &out, 6.0);
    wait_for_files(&out, &["funnel.restart.0.csv"]);
    let half = items.len() / 2;
    let messages: Vec<Vec<u8>> = items.iter().map(|i| i.bytes.clone()).collect();
    publish(&address, "funnel/restart/0", &messages[..half]);
    drop(broker);
    std::thread::sleep(Duration::from_millis(500));
    broker = Broker::start(tmp.path(), Some(port));
    // The receiver's retained header is gone with the broker: the second half starts with the
    // stream's next header, as a device's stream does every 8 frames.
    std::thread::sleep(Duration::from_millis(1500));
    publish(&address, "funnel/restart/0", &messages[half..]);
    let outcome = receiver.join().unwrap().unwrap();
    drop(broker);
    assert!(outcome.disconnections >= 1);
    let t = &outcome.topics[0];
    let rows = rows(&t.out);
    let indices: BTreeSet<u64> = rows.iter().map(|(i, _)| *i).collect();
    assert_eq!(indices.len(), rows.len(), "a sample decoded twice");
    let frames = items.iter().filter(|i| !i.header).count() as u64;
    assert_eq!(t.report.frames + t.report.frames_lost, frames, "{}", t.report.summary());
    assert!(rows.iter().enumerate().all(|(i, (index, _))| *index == i as u64));
}

/// A broker that cannot be reached is an error naming it, for the gateway and the receiver,
/// not a silent wait.
#[test]
fn an_unreachable_broker_is_reported() {
    let tmp = tempfile::tempdir().unwrap();
    // A port nothing listens on.
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let broker = BrokerAddress { host: "127.0.0.1".into(), port };
    let capture = tmp.path().join("d.bin");
    std::fs::write(&capture, device_stream(0)).unwrap();
    let gateway = run_gateway(&GatewayRequest {
        source: Source::File(capture),
        broker: broker.clone(),
        topic: "funnel/{device}/{stream}".into(),
        device: "d".into(),
    });
    let e = format!("{:#}", gateway.unwrap_err());
    assert!(e.contains(&format!("cannot reach the MQTT broker mqtt://127.0.0.1:{port}")), "{e}");
    let receiver = start_receiver(&broker, &tmp.path().join("out"), 30.0).join().unwrap();
    let e = format!("{:#}", receiver.unwrap_err());
    assert!(e.contains("cannot reach the MQTT broker"), "{e}");
}
