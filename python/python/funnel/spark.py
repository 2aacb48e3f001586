"""Fleet decode on Spark: a partitioned archive of frame files into Parquet, with the package's
decoder in Spark's Python workers.

The archive is what an MQTT consumer writes, one file per device and hour:

    ARCHIVE/device=<name>/stream=<id>/hour=<YYYY-MM-DDTHH>/<part>.bin

each file holding the messages of one stream (the topic ``funnel/{device}/{stream}``) in that
hour, stream headers and frames as ``funnel gateway`` publishes them (``split_link`` splits a
link the same way), in the order they arrived. The job decodes each stream's files in
(hour, file name) order with one stream decoder, so a frame that arrives a few places late, even
in the next hour's file, is put back, and every gap is counted once. Streams are decoded in
parallel, a group of streams per Spark task, and each task writes its streams' files itself
with the package's Rust writer, the one behind ``funnel decode --out F.parquet`` (a first version
that handed the rows to Spark's Parquet writer took 61 s for 256 devices where one writing from
the task took 15 s, both on local[2]):

    OUT/samples/device=<name>/stream=<id>/part-0.parquet   sample_index, one FLOAT column per
                                                           channel (null where missing), status,
                                                           max_error for a bounded model: the
                                                           columns of `funnel decode --out F.parquet`
    OUT/reports/device=<name>/stream=<id>/part-0.parquet   one row: what the stream's decoder
                                                           reported, or the error that stopped it

(``spark.read.parquet(OUT + "/samples")`` reads them back with ``device`` and ``stream``
columns). A stream's files are replaced whole, by an atomic rename: a retried task or a second
run leaves one file per stream, and running the job again on some devices (``--device``) after
late files landed replaces their rows and leaves the others alone. OUT must be a file system
every executor writes to (local mode, or a shared mount). ``docs/scale.md`` says how this job
grows to 100,000 devices.

    python -m funnel.spark decode --model models/ecg --archive A --out O --master 'local[2]'
    python -m funnel.spark archive --model models/ecg --data data/mitbih208_ecg.csv \\
        --column ecg_mlii_mV --devices 8 --frames-per-hour 30 --out A    # a simulated fleet
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Iterable, Iterator, Optional, Sequence

import numpy as np

from . import LinkItem, Model, split_link

# The report's counters, as the reports table's columns (see `Model.decode`).
REPORT_COUNTS = (
    "bytes",
    "frames",
    "windows",
    "samples_written",
    "frames_lost",
    "missing_samples",
    "corrupt_bytes",
    "restarts",
    "saturated_windows",
    "undecodable_frames",
)


# --- the archive ------------------------------------------------------------------------------


def hour_files(items: Sequence[LinkItem], frames_per_hour: int) -> "list[bytes]":
    """A stream's messages cut into hour files of ``frames_per_hour`` frames each, every file
    starting with the stream's latest header (as a consumer that opens a file per hour writes
    the broker's retained header first)."""
    if frames_per_hour < 1:
        raise ValueError("frames_per_hour must be at least 1")
    files, header, current, frames = [], None, [], 0
    for item in items:
        if item.header:
            header = item.data
            if current:  # a header within the hour (a restart) stays where it came
                current.append(item.data)
            continue
        if frames == frames_per_hour:
            files.append(b"".join(current))
            current, frames = [], 0
        if not current and header is not None:
            current.append(header)
        current.append(item.data)
        frames += 1
    if current:
        files.append(b"".join(current))
    return files


def hour_name(hour: int) -> str:
    """The archive's name of hour ``hour`` of the simulated fleet (from 2026-11-27T00)."""
    return (datetime(2026, 11, 27) + timedelta(hours=hour)).strftime("%Y-%m-%dT%H")


def write_hour_files(archive: Path, device: str, files: Sequence[bytes], first_hour: int = 0, stream: int = 0) -> None:
    """Writes one stream's hour files into the archive's layout."""
    for i, data in enumerate(files):
        directory = Path(archive) / f"device={device}" / f"stream={stream}" / f"hour={hour_name(first_hour + i)}"
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "part-0.bin").write_bytes(data)


def simulate_fleet(model: Model, values: np.ndarray, devices: int, frames_per_hour: int, archive: Path) -> int:
    """An archive of ``devices`` devices, each sending ``values`` (``[T, C]``) from its own
    starting point (the recording rotated), cut into hour files. Returns the frames written."""
    frames = 0
    for d in range(devices):
        shifted = np.roll(values, -(d * len(values) // devices), axis=0)
        items, _ = split_link(model.encode(shifted))
        frames += sum(not i.header for i in items)
        write_hour_files(archive, f"dev-{d:04d}", hour_files(items, frames_per_hour))
    return frames


# --- the job ----------------------------------------------------------------------------------


@dataclass
class JobOutcome:
    streams: int
    frames: int
    samples: int
    seconds: float

    @property
    def frames_per_second(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else float("inf")


_MODELS: "dict[str, Model]" = {}


def _model(path: str) -> Model:
    """The model, loaded once per Python worker."""
    if path not in _MODELS:
        _MODELS[path] = Model(path)
    return _MODELS[path]


def _model_path(name: str) -> str:
    """Where the worker finds the model the driver shipped with ``addFile``."""
    from pyspark import SparkFiles

    return SparkFiles.get(name)


def _report_schema():
    """The summary a task returns to the driver for each stream (its reports file holds more)."""
    import pyarrow as pa

    return pa.schema(
        [("device", pa.string()), ("stream", pa.string()), ("frames", pa.int64()), ("samples", pa.int64())]
    )


def _ddl(schema) -> str:
    """A pyarrow schema as the Spark DDL string ``mapInArrow`` takes."""
    import pyarrow as pa

    types = {pa.string(): "string", pa.int64(): "bigint"}
    quoted = ("`" + f.name.replace("`", "``") + "`" for f in schema)
    return ", ".join(f"{name} {types[f.type]}" for name, f in zip(quoted, schema))


def _write_replacing(data: bytes, path: Path) -> None:
    """Writes ``data`` to ``path`` in one step for readers: a hidden file beside it, then an
    atomic rename over the old one (a retried or repeated task leaves exactly one file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    hidden = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    hidden.write_bytes(data)
    os.replace(hidden, path)


def _report_file(model: Model, report: Optional[dict], error: Optional[str]) -> bytes:
    """A stream's reports file: one row, the decoder's report or the error that stopped it."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    report = report or {}
    row = {"model_id": [model.model_id], "error": [error]}
    for name in REPORT_COUNTS:
        row[name] = [report.get(name)]
    row["gaps"] = [len(report["gaps"]) if report else None]
    row["summary"] = [report.get("summary")]
    types = {"model_id": pa.string(), "error": pa.string(), "summary": pa.string()}
    out = pa.BufferOutputStream()
    pq.write_table(pa.table({k: pa.array(v, types.get(k, pa.int64())) for k, v in row.items()}), out)
    return out.getvalue().to_pybytes()


def _decode_streams(model_name: str, out: str):
    """The Spark task: decodes each stream of its partition (rows sorted by device, stream,
    hour, path), writes the stream's samples and report files, and returns a summary row."""

    def decode(batches: Iterator) -> Iterator:
        import pyarrow as pa

        model = _model(_model_path(model_name))

        def finish(key: "tuple[str, str]", chunks: "list[bytes]"):
            device, stream = key
            part = Path(f"device={device}") / f"stream={stream}" / "part-0.parquet"
            try:
                (samples, report), error = model.decode_to_parquet(b"".join(chunks)), None
            except ValueError as e:  # a stream this model cannot decode: say so, keep going
                samples, report, error = None, None, str(e)
            if samples is None:  # no rows rather than the rows of an earlier run
                (Path(out) / "samples" / part).unlink(missing_ok=True)
            else:
                _write_replacing(samples, Path(out) / "samples" / part)
            _write_replacing(_report_file(model, report, error), Path(out) / "reports" / part)
            frames, rows = (0, 0) if report is None else (report["frames"], report["samples_written"])
            summary = {"device": [device], "stream": [stream], "frames": [frames], "samples": [rows]}
            return pa.RecordBatch.from_pydict(summary, schema=_report_schema())

        stream, chunks = None, []
        for batch in batches:
            columns = (batch.column(name).to_pylist() for name in ("device", "stream", "content"))
            for device, number, content in zip(*columns):
                if (device, number) != stream:
                    if stream is not None:
                        yield finish(stream, chunks)
                    stream, chunks = (device, number), []
                chunks.append(content)
        if stream is not None:
            yield finish(stream, chunks)

    return decode


def spark_session(master: str = "local[2]", app: str = "funnel-decode"):
    """A Spark session whose Python workers run this interpreter (the one with the package)."""
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    from pyspark.sql import SparkSession

    return (
        SparkSession.builder.master(master)
        .appName(app)
        .config("spark.ui.enabled", "false")
        # `hour=2026-11-27T14` and `stream=0` stay strings.
        .config("spark.sql.sources.partitionColumnTypeInference.enabled", "false")
        .getOrCreate()
    )


def decode_archive(
    spark,
    model_dir,
    archive,
    out,
    devices: Optional[Iterable[str]] = None,
    partitions: Optional[int] = None,
) -> JobOutcome:
    """Decodes the archive's devices (all, or ``devices``) into ``out`` (see the module's doc)."""
    from pyspark.sql import functions as F

    started = time.perf_counter()
    model_dir = Path(model_dir).resolve()
    Model(model_dir)  # checked on the driver before any task starts
    spark.sparkContext.addFile(str(model_dir), recursive=True)
    files = spark.read.format("binaryFile").option("pathGlobFilter", "*.bin").load(str(Path(archive).resolve()))
    missing = {"device", "stream", "hour"} - set(files.columns)
    if missing:
        raise ValueError(
            f"{archive}: not an archive of device=<name>/stream=<id>/hour=<hour>/*.bin files "
            f"(no {', '.join(sorted(missing))} level)"
        )
    if devices is not None:
        files = files.where(F.col("device").isin(list(devices)))
    partitions = partitions or spark.sparkContext.defaultParallelism
    streams = (
        files.select("device", "stream", "hour", "path", "content")
        .repartition(partitions, "device", "stream")
        .sortWithinPartitions("device", "stream", "hour", "path")
        .mapInArrow(_decode_streams(model_dir.name, str(Path(out).resolve())), _ddl(_report_schema()))
        .collect()
    )
    return JobOutcome(
        len(streams), sum(s.frames for s in streams), sum(s.samples for s in streams), time.perf_counter() - started
    )


# --- the command line -------------------------------------------------------------------------


def _read_column(path: Path, column: str) -> np.ndarray:
    import csv

    with open(path, newline="") as f:
        header = next(csv.reader(f))
    if column not in header:
        raise SystemExit(f"{path}: no column {column!r} (it has {', '.join(header)})")
    return np.loadtxt(path, delimiter=",", skiprows=1, usecols=header.index(column), ndmin=1)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m funnel.spark", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    job = commands.add_parser("decode", help="decode an archive of frame files into Parquet")
    job.add_argument("--model", required=True, type=Path)
    job.add_argument("--archive", required=True, type=Path)
    job.add_argument("--out", required=True, type=Path)
    job.add_argument("--master", default="local[2]", help="Spark master (default local[2])")
    job.add_argument("--partitions", type=int, help="Spark tasks (default: the master's parallelism)")
    job.add_argument("--device", action="append", help="decode only this device (repeatable)")
    job.add_argument(
        "--runs", type=int, default=1, help="run the job this many times in one Spark session (the first warms the JVM)"
    )
    fleet = commands.add_parser("archive", help="simulate a fleet's archive from a recording")
    fleet.add_argument("--model", required=True, type=Path)
    fleet.add_argument("--data", required=True, type=Path)
    fleet.add_argument("--column", required=True)
    fleet.add_argument("--devices", type=int, default=8)
    fleet.add_argument("--frames-per-hour", type=int, default=30)
    fleet.add_argument("--out", required=True, type=Path)
    args = parser.parse_args(argv)
    if args.command == "decode" and (args.runs < 1 or (args.partitions is not None and args.partitions < 1)):
        parser.error("--runs and --partitions must be at least 1")

    if args.command == "archive":
        if args.devices < 1 or args.frames_per_hour < 1:
            parser.error("--devices and --frames-per-hour must be at least 1")
        model = Model(args.model)
        values = _read_column(args.data, args.column)[:, None]
        frames = simulate_fleet(model, values, args.devices, args.frames_per_hour, args.out)
        print(f"{args.out}: {args.devices} devices, {frames} frames")
        return 0
    spark = spark_session(args.master)
    try:
        for _ in range(args.runs):
            outcome = decode_archive(spark, args.model, args.archive, args.out, args.device, args.partitions)
            print(
                f"{args.out}: {outcome.streams} streams, {outcome.frames} frames, {outcome.samples} samples "
                f"decoded in {outcome.seconds:.2f} s on {args.master}: {outcome.frames_per_second:,.0f} frames/s"
            )
    finally:
        spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
