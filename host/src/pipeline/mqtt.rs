//! A fleet's frames through an MQTT broker. `funnel gateway` forwards what one link receives,
//! item by item — each stream header and each data frame, checked, as one message — and
//! `funnel decode --mqtt` decodes every stream heard on a topic filter into a CSV of its own,
//! each with its own gap accounting.
//!
//! One message per item is what lets the receiver's frame numbering do its work across the
//! broker: a lost message is a lost frame (a gap, reported), a message delivered twice (QoS 1
//! after a reconnection) is a repeated frame (dropped), frames reordered by a few places are put
//! back in order. Headers are published retained, so that a receiver that subscribes mid-stream
//! decodes from the next frame instead of waiting for the stream's next header.

use std::collections::BTreeMap;
use std::fmt;
use std::fs::File;
use std::io::Read;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use funnel_shared::wire::{DecodeEvent, FrameDecoder, LockChange, MAX_FRAME_LEN};
use rumqttc::{Client, Connection, Event, MqttOptions, Packet, QoS, RecvTimeoutError};

use super::decode::{watch_for_interrupt, DecodingModel, OutputFormat, RowsSink, Source, INTERRUPTED};
use crate::codec::{DecodeReport, StreamDecoder};
use crate::runtime::{Backend, Runtime};

/// The port of `mqtt://host` without one.
pub const DEFAULT_MQTT_PORT: u16 = 1883;
/// The gateway's topic without `--topic`: a topic per device and stream.
pub const DEFAULT_GATEWAY_TOPIC: &str = "funnel/{device}/{stream}";
/// What `funnel decode --mqtt` subscribes to without `--topic`.
pub const DEFAULT_DECODE_TOPIC: &str = "funnel/#";
/// Most streams (topics) one `funnel decode --mqtt` decodes at once; messages on further topics
/// are counted and dropped, so a publisher cannot make the receiver open files without end.
pub const MAX_TOPICS: usize = 256;
/// How long the gateway waits at the end of its source for the broker to acknowledge what it
/// published.
const ACK_WAIT: Duration = Duration::from_secs(10);
/// Pause between connection attempts while the broker is unreachable.
const RECONNECT_PAUSE: Duration = Duration::from_millis(250);
/// How long a gateway or a receiver tries to reach its broker the first time before it gives
/// up with the reason (once connected, it tries again for as long as it runs).
const FIRST_CONNECTION: Duration = Duration::from_secs(5);

/// `mqtt://host[:port]`: a broker reached over plain TCP.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BrokerAddress {
    pub host: String,
    pub port: u16,
}

impl FromStr for BrokerAddress {
    type Err = anyhow::Error;
    fn from_str(url: &str) -> Result<Self> {
        let Some(rest) = url.strip_prefix("mqtt://") else {
            bail!("the broker {url:?} is not an mqtt://host[:port] address (TLS, mqtts://, is not supported)")
        };
        let rest = rest.trim_end_matches('/');
        let (host, port) = match rest.rsplit_once(':') {
            // An IPv6 address in brackets has colons of its own.
            Some((host, port)) if !port.contains(']') => {
                (host, port.parse().with_context(|| format!("the port of the broker {url:?} is not a number"))?)
            }
            _ => (rest, DEFAULT_MQTT_PORT),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() || host.contains('/') {
            bail!("the broker {url:?} has no host name");
        }
        Ok(BrokerAddress { host: host.to_string(), port })
    }
}

impl BrokerAddress {
    /// A client of this broker named `id` (each connection's name must be its own), and the
    /// connection to drive for it to make progress.
    fn client(&self, id: &str) -> (Client, Connection) {
        let mut options = MqttOptions::new(id, &self.host, self.port);
        // Messages are one header or frame: the largest frame, with room for the topic.
        options.set_keep_alive(Duration::from_secs(10)).set_max_packet_size(MAX_FRAME_LEN + 1024, MAX_FRAME_LEN + 1024);
        Client::new(options, 64)
    }
}

impl fmt::Display for BrokerAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "mqtt://{}:{}", self.host, self.port)
    }
}

/// One item a link carried, as it carried it: a stream header or a data frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkItem {
    pub stream_id: u8,
    pub header: bool,
    pub bytes: Vec<u8>,
}

/// What a gateway did with its link.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GatewayReport {
    /// Bytes read from the link.
    pub bytes: u64,
    /// Stream headers and data frames forwarded (published).
    pub headers: u64,
    pub frames: u64,
    /// Frames the link lost before the gateway (numbering gaps), per the link's receiver.
    pub frames_lost: u64,
    /// Bytes of the link that were no header or frame (damage, noise): not forwarded.
    pub dropped_bytes: u64,
    /// Published messages the broker had not acknowledged when the gateway stopped.
    pub unacknowledged: u64,
    /// Times the connection to the broker was lost (and tried again).
    pub disconnections: u64,
}

impl GatewayReport {
    pub fn summary(&self) -> String {
        format!(
            "{} bytes read: {} stream header(s) and {} frame(s) forwarded, {} frame(s) lost on the link, {} byte(s) of damage dropped; {} message(s) not acknowledged by the broker, {} disconnection(s)",
            self.bytes,
            self.headers,
            self.frames,
            self.frames_lost,
            self.dropped_bytes,
            self.unacknowledged,
            self.disconnections
        )
    }
}

/// Splits a link's bytes into its checked items (through the link's receiver,
/// [`FrameDecoder`]): what a gateway forwards. Damage is left out, each frame goes as it came.
#[derive(Default)]
pub struct LinkSplitter {
    frames: FrameDecoder,
    report: GatewayReport,
}

impl LinkSplitter {
    pub fn new() -> Self {
        Self::default()
    }

    /// The items completed by `chunk` (any size, split anywhere).
    pub fn feed(&mut self, chunk: &[u8]) -> Result<Vec<LinkItem>> {
        self.report.bytes += chunk.len() as u64;
        let events: Vec<DecodeEvent> = self.frames.feed(chunk).collect();
        self.items(events)
    }

    /// The items held back at the end of the link (frames waiting for a late one), and the
    /// report.
    pub fn finish(mut self) -> Result<(Vec<LinkItem>, GatewayReport)> {
        let events: Vec<DecodeEvent> = self.frames.finish().collect();
        let items = self.items(events)?;
        Ok((items, self.report))
    }

    fn items(&mut self, events: Vec<DecodeEvent>) -> Result<Vec<LinkItem>> {
        let mut items = Vec::new();
        for event in events {
            match event {
                // A header no frame confirmed (repeated, late or bogus) is not forwarded.
                DecodeEvent::Header { lock: LockChange::Ignored, .. } => {}
                DecodeEvent::Header { header, .. } => {
                    self.report.headers += 1;
                    items.push(LinkItem { stream_id: header.stream_id, header: true, bytes: header.encode().to_vec() });
                }
                DecodeEvent::Frame(frame) => {
                    let mut bytes = vec![0u8; MAX_FRAME_LEN];
                    let len = frame.encode(&mut bytes).context("internal: a received frame does not encode")?;
                    bytes.truncate(len);
                    self.report.frames += 1;
                    items.push(LinkItem { stream_id: frame.stream_id, header: false, bytes });
                }
                DecodeEvent::Gap(gap) => self.report.frames_lost += u64::from(gap.frames),
                DecodeEvent::Corrupt { bytes, .. } => self.report.dropped_bytes += bytes as u64,
            }
        }
        Ok(items)
    }
}

/// `funnel gateway`.
#[derive(Clone, Debug)]
pub struct GatewayRequest {
    /// The link: a serial port (forwarded until `seconds`, or forever), a file or stdin.
    pub source: Source,
    pub broker: BrokerAddress,
    /// Topic of each item, with `{device}` and `{stream}` (the stream id) filled in.
    pub topic: String,
    /// The device's name in topics.
    pub device: String,
}

/// The topic of stream `stream_id` of `device` under `template` (see [`GatewayRequest::topic`]).
pub fn gateway_topic(template: &str, device: &str, stream_id: u8) -> String {
    template.replace("{device}", device).replace("{stream}", &stream_id.to_string())
}

fn check_topic_part(what: &str, value: &str) -> Result<()> {
    if value.is_empty() || value.contains(['+', '#', '\0']) {
        bail!("{what} {value:?} cannot be part of an MQTT topic (empty, or a wildcard + or #)");
    }
    Ok(())
}

/// Reads the link and publishes each of its items (QoS 1; headers retained) to the broker,
/// until the source ends (or `seconds`, or Ctrl-C); then waits for the broker to acknowledge
/// what was published.
pub fn run_gateway(request: &GatewayRequest) -> Result<GatewayReport> {
    check_topic_part("the device name", &request.device)?;
    if request.device.contains('/') {
        bail!("the device name {:?} cannot hold a /: it is one level of the topic", request.device);
    }
    check_topic_part("the topic", &gateway_topic(&request.topic, &request.device, 0))?;
    let mut reader = request.source.open()?;
    let seconds = match request.source {
        Source::Serial { seconds, .. } => seconds,
        _ => None,
    };
    let (client, connection) =
        request.broker.client(&format!("funnel-gateway-{}-{}", request.device, std::process::id()));
    let acked = Arc::new(AtomicU64::new(0));
    let disconnections = Arc::new(AtomicU64::new(0));
    let events = {
        let (acked, disconnections) = (acked.clone(), disconnections.clone());
        let broker = request.broker.clone();
        std::thread::Builder::new()
            .name("mqtt connection".into())
            .spawn(move || drive_publisher(connection, &broker, &acked, &disconnections))
            .context("cannot start the MQTT connection's thread")?
    };
    watch_for_interrupt();
    let started = Instant::now();
    let mut splitter = LinkSplitter::new();
    let mut published = 0u64;
    // A publish fails only once the connection's thread has ended: it says why.
    let stopped = |events: std::thread::JoinHandle<Result<()>>| match events.join() {
        Ok(Err(e)) => e,
        _ => anyhow::anyhow!("the MQTT connection stopped"),
    };
    let mut publish = |items: Vec<LinkItem>| -> bool {
        for item in items {
            let topic = gateway_topic(&request.topic, &request.device, item.stream_id);
            if client.publish(topic, QoS::AtLeastOnce, item.header, item.bytes).is_err() {
                return false;
            }
            published += 1;
        }
        true
    };
    let mut buf = vec![0u8; 1 << 14];
    loop {
        if seconds.is_some_and(|s| started.elapsed().as_secs_f64() >= s) || INTERRUPTED.swap(false, Ordering::SeqCst) {
            break;
        }
        match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                if !publish(splitter.feed(&buf[..n])?) {
                    return Err(stopped(events));
                }
            }
            Err(e) if matches!(e.kind(), std::io::ErrorKind::TimedOut | std::io::ErrorKind::Interrupted) => {}
            Err(e) => return Err(e).context("reading the link"),
        }
    }
    let (rest, mut report) = splitter.finish()?;
    if !publish(rest) {
        return Err(stopped(events));
    }
    // Wait for the acknowledgements, as long as they keep coming.
    let mut last = (acked.load(Ordering::SeqCst), Instant::now());
    while last.0 < published && last.1.elapsed() < ACK_WAIT {
        std::thread::sleep(Duration::from_millis(20));
        let now = acked.load(Ordering::SeqCst);
        if now != last.0 {
            last = (now, Instant::now());
        }
    }
    // The connection thread ends once the client is gone.
    let _ = client.disconnect();
    drop(client);
    if let Ok(Err(e)) = events.join() {
        return Err(e);
    }
    report.unacknowledged = published.saturating_sub(acked.load(Ordering::SeqCst));
    report.disconnections = disconnections.load(Ordering::SeqCst);
    Ok(report)
}

/// Runs a publisher's connection until its client is gone, counting acknowledgements and lost
/// connections (it reconnects by going on); an error when the broker cannot be reached at all
/// (see [`FIRST_CONNECTION`]).
fn drive_publisher(
    mut connection: Connection,
    broker: &BrokerAddress,
    acked: &AtomicU64,
    disconnections: &AtomicU64,
) -> Result<()> {
    let (started, mut ever_connected) = (Instant::now(), false);
    let mut connected = false;
    loop {
        match connection.recv() {
            Err(_) => return Ok(()),
            Ok(Ok(Event::Incoming(Packet::ConnAck(_)))) => (connected, ever_connected) = (true, true),
            Ok(Ok(Event::Incoming(Packet::PubAck(_)))) => {
                acked.fetch_add(1, Ordering::SeqCst);
            }
            Ok(Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect))) => return Ok(()),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                if connected {
                    disconnections.fetch_add(1, Ordering::SeqCst);
                    eprintln!("funnel gateway: lost the broker ({e}); reconnecting");
                } else if !ever_connected && started.elapsed() > FIRST_CONNECTION {
                    bail!("cannot reach the MQTT broker {broker}: {e}");
                }
                connected = false;
                std::thread::sleep(RECONNECT_PAUSE);
            }
        }
    }
}

/// `funnel decode --mqtt`.
#[derive(Clone, Debug)]
pub struct MqttDecodeRequest {
    pub model: PathBuf,
    pub broker: BrokerAddress,
    /// Topic filter (MQTT wildcards allowed): every topic it matches is one stream.
    pub topic: String,
    /// Directory of the outputs, one per topic ([`topic_file_name`]).
    pub out: PathBuf,
    pub format: OutputFormat,
    pub backend: Backend,
    /// Stop after this long, or once nothing has arrived for `idle` (default: until Ctrl-C).
    pub seconds: Option<f64>,
    pub idle: Option<f64>,
}

/// One topic's decode.
#[derive(Debug)]
pub struct TopicOutput {
    pub topic: String,
    pub out: PathBuf,
    pub report: DecodeReport,
}

/// What `funnel decode --mqtt` did.
#[derive(Debug, Default)]
pub struct MqttDecodeOutcome {
    /// Per topic, in the order of the topics' names.
    pub topics: Vec<TopicOutput>,
    /// Messages on topics beyond [`MAX_TOPICS`]: not decoded.
    pub dropped_messages: u64,
    /// Times the connection to the broker was lost (and made again).
    pub disconnections: u64,
}

/// The file name of `topic`'s rows: its levels joined by `.`, characters other than letters,
/// digits, `-` and `_` replaced by `_` (`funnel/ward-3/0` → `funnel.ward-3.0.csv`, or
/// `.parquet`).
pub fn topic_file_name(topic: &str, format: OutputFormat) -> String {
    let levels: Vec<String> = topic
        .split('/')
        .map(|l| l.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect())
        .collect();
    format!("{}.{}", levels.join("."), format.extension())
}

struct TopicDecoder<'d> {
    out: PathBuf,
    decoder: StreamDecoder<'d, dyn Runtime + 'd>,
    sink: RowsSink,
}

/// Subscribes to the request's topic filter and decodes every topic's stream as it arrives,
/// each into its own CSV; at the end, each decoder is finished (what it holds written) and
/// reported.
pub fn decode_mqtt(request: &MqttDecodeRequest) -> Result<MqttDecodeOutcome> {
    let model = DecodingModel::load(&request.model, request.backend)?;
    let decoding = super::decode::Decoding { live: true, ..model.decoding() };
    std::fs::create_dir_all(&request.out)
        .with_context(|| format!("cannot create the output directory {}", request.out.display()))?;
    let (client, mut connection) = request.broker.client(&format!("funnel-decode-{}", std::process::id()));
    watch_for_interrupt();
    let started = Instant::now();
    let mut last_message = Instant::now();
    let mut topics: BTreeMap<String, TopicDecoder<'_>> = BTreeMap::new();
    let mut outcome = MqttDecodeOutcome::default();
    let mut connected = false;
    loop {
        if request.seconds.is_some_and(|s| started.elapsed().as_secs_f64() >= s)
            || request.idle.is_some_and(|s| last_message.elapsed().as_secs_f64() >= s)
            || INTERRUPTED.swap(false, Ordering::SeqCst)
        {
            break;
        }
        match connection.recv_timeout(Duration::from_millis(100)) {
            Err(RecvTimeoutError::Timeout) => {
                for t in topics.values_mut() {
                    t.decoder.flush(&mut t.sink)?;
                }
            }
            Err(RecvTimeoutError::Disconnected) => bail!("the MQTT client stopped"),
            // Every connection (the first, and after the broker restarted) subscribes: a broker
            // that lost its sessions has forgotten the subscription.
            Ok(Ok(Event::Incoming(Packet::ConnAck(_)))) => {
                connected = true;
                client.subscribe(&request.topic, QoS::AtLeastOnce).context("subscribing")?;
            }
            Ok(Ok(Event::Incoming(Packet::Publish(message)))) => {
                last_message = Instant::now();
                if !topics.contains_key(&message.topic) {
                    if topics.len() >= MAX_TOPICS {
                        outcome.dropped_messages += 1;
                        continue;
                    }
                    // Two topics whose names differ only in characters a file name cannot hold
                    // get files of their own.
                    let name = topic_file_name(&message.topic, request.format);
                    let taken = |p: &PathBuf| topics.values().any(|t| &t.out == p);
                    let mut out = request.out.join(&name);
                    for n in 2.. {
                        if !taken(&out) {
                            break;
                        }
                        let stem = name.trim_end_matches(request.format.extension()).trim_end_matches('.');
                        out = request.out.join(format!("{stem}.{n}.{}", request.format.extension()));
                    }
                    let file = File::create(&out).with_context(|| format!("cannot create {}", out.display()))?;
                    let topic = TopicDecoder {
                        out,
                        decoder: decoding.stream_decoder()?,
                        sink: decoding.rows_sink(file, request.format)?,
                    };
                    topics.insert(message.topic.clone(), topic);
                }
                let t = topics.get_mut(&message.topic).expect("inserted above");
                t.decoder
                    .feed(&message.payload, &mut t.sink)
                    .with_context(|| format!("decoding topic {}", message.topic))?;
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                if connected {
                    outcome.disconnections += 1;
                    eprintln!("funnel decode: lost the broker {} ({e}); reconnecting", request.broker);
                } else if started.elapsed() > FIRST_CONNECTION && outcome.disconnections == 0 && topics.is_empty() {
                    bail!("cannot reach the MQTT broker {}: {e}", request.broker);
                }
                connected = false;
                std::thread::sleep(RECONNECT_PAUSE);
            }
        }
    }
    let _ = client.disconnect();
    for (topic, mut t) in topics {
        let report = t.decoder.finish(&mut t.sink)?;
        t.sink.finish().with_context(|| format!("cannot write {}", t.out.display()))?;
        outcome.topics.push(TopicOutput { topic, out: t.out, report });
    }
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_addresses_parse_or_say_why_not() {
        let parse = |s: &str| s.parse::<BrokerAddress>();
        assert_eq!(parse("mqtt://localhost").unwrap(), BrokerAddress { host: "localhost".into(), port: 1883 });
        assert_eq!(parse("mqtt://10.0.0.2:18830/").unwrap(), BrokerAddress { host: "10.0.0.2".into(), port: 18830 });
        assert_eq!(parse("mqtt://[::1]:1884").unwrap(), BrokerAddress { host: "::1".into(), port: 1884 });
        assert!(parse("mqtts://host").unwrap_err().to_string().contains("TLS"));
        assert!(parse("localhost:1883").unwrap_err().to_string().contains("mqtt://host[:port]"));
        assert!(parse("mqtt://host:http").unwrap_err().to_string().contains("port"));
        assert!(parse("mqtt://").unwrap_err().to_string().contains("no host"));
    }

    #[test]
    fn topics_and_their_files() {
        assert_eq!(gateway_topic(DEFAULT_GATEWAY_TOPIC, "ward-3", 2), "funnel/ward-3/2");
        assert_eq!(topic_file_name("funnel/ward-3/2", OutputFormat::Csv), "funnel.ward-3.2.csv");
        assert_eq!(topic_file_name("a/../b c", OutputFormat::Parquet), "a.__.b_c.parquet");
        assert!(check_topic_part("the device name", "a+b").is_err());
        assert!(check_topic_part("the device name", "").is_err());
    }
}
