"""What each protocol costs: the same held-out examples to the same server over TorchServe's
/predictions, the Open Inference Protocol's REST route (JSON, as curl sends it), and its gRPC
ModelInfer (raw_input_contents, as tritonclient sends it).

One generator for all three (its own process; asyncio, a closed loop of `concurrency` callers each
sending its next request when the last is answered, one example per request): HTTP/1.1 keep-alive
connections or gRPC channels (HTTP/2), one per caller. Rounds alternate
the transports so drift on a noisy machine hits each alike; bench.json keeps the medians.

    python -m loadtest.transports --run SPEC.json     # one measurement (the bench calls this)
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from loadtest.openloop import percentile_ms, post_request
from training.catalog import CATALOG, REPO

TRANSPORTS = ("predictions", "v2_rest", "v2_grpc")
TOKEN_VARIABLE = "TRANSPORTS_AUTH_TOKEN"  # not in argv, which other users can read
GRPC_MODEL_INFER = "/inference.GRPCInferenceService/ModelInfer"


def v2_json_body(name: str, element: bytes) -> bytes:
    """One example as a REST JSON v2 request: text as is, an image base64-encoded."""
    entry = CATALOG[name]
    data = base64.b64encode(element).decode() if entry.input_kind == "image" else element.decode()
    tensor = entry.handler_class().signature.input
    return json.dumps({"inputs": [{"name": tensor.name, "datatype": "BYTES", "shape": [1], "data": [data]}]}).encode()


def v2_grpc_message(name: str, element: bytes) -> bytes:
    """One example as a serialized ModelInferRequest, its data in raw_input_contents (tritonclient's form)."""
    from tritonclient.grpc import service_pb2

    tensor = CATALOG[name].handler_class().signature.input
    request = service_pb2.ModelInferRequest(model_name=name, inputs=[service_pb2.ModelInferRequest.InferInputTensor(
        name=tensor.name, datatype="BYTES", shape=[1])], raw_input_contents=[struct.pack("<I", len(element)) + element])
    return request.SerializeToString()


def request_files(name: str, transport: str, host: str, port: int, token: str, out: Path) -> list[str]:
    """The held-out requests of the bench, each written as the bytes the generator sends."""
    entry, paths = CATALOG[name], []
    for index, sample in enumerate(entry.heldout_requests(64)):
        if transport == "predictions":
            data = post_request(host, port, entry.endpoint, sample.body, sample.content_type, token)
        elif transport == "v2_rest":
            data = post_request(host, port, entry.v2_endpoint, v2_json_body(name, entry.v2_element(sample)),
                                "application/json", token)
        else:
            data = v2_grpc_message(name, entry.v2_element(sample))
        path = out / f"{transport}-{index}.bin"
        path.write_bytes(data)
        paths.append(str(path))
    return paths


# --- the generator (its own process) --------------------------------------------------------------

async def _read_http_status(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    length = next((int(line.split(":", 1)[1]) for line in lines if line.lower().startswith("content-length:")), None)
    if length is None:
        raise RuntimeError(f"an answer without Content-Length: {lines[0]!r}")
    await reader.readexactly(length)
    return int(lines[0].split()[1])


async def _http_caller(host: str, port: int, requests: list[bytes], offset: int, deadline: float,
                       latencies: list[float], errors: list[int]) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    index = offset
    while time.perf_counter() < deadline:
        started = time.perf_counter()
        writer.write(requests[index % len(requests)])
        status = await _read_http_status(reader)
        if status == 200:
            latencies.append(time.perf_counter() - started)
        else:
            errors.append(status)
        index += 1
    writer.close()


async def _grpc_caller(call, metadata, requests: list[bytes], offset: int, deadline: float,
                       latencies: list[float], errors: list) -> None:
    import grpc

    index = offset
    while time.perf_counter() < deadline:
        started = time.perf_counter()
        try:
            await call(requests[index % len(requests)], metadata=metadata, timeout=30)
            latencies.append(time.perf_counter() - started)
        except grpc.aio.AioRpcError as error:
            errors.append(error.code().name)
        index += 1


async def closed_loop(spec: dict, token: str) -> dict:
    requests = [Path(path).read_bytes() for path in spec["requests"]]
    latencies: list[float] = []
    errors: list = []
    started = time.perf_counter()
    deadline = started + spec["seconds"]
    concurrency = spec["concurrency"]
    if spec["transport"] == "v2_grpc":
        import grpc

        # One channel (an HTTP/2 connection) per caller, as each HTTP caller has its own connection.
        channels = [grpc.aio.insecure_channel(spec["target"]) for _ in range(concurrency)]
        metadata = (("authorization", f"Bearer {token}"),)
        # bytes in and out: no (de)serialising in the loop
        calls = [channel.unary_unary(GRPC_MODEL_INFER) for channel in channels]
        await asyncio.gather(*(_grpc_caller(calls[i], metadata, requests, i, deadline, latencies, errors)
                               for i in range(concurrency)))
        await asyncio.gather(*(channel.close() for channel in channels))
    else:
        host, port = spec["target"].rsplit(":", 1)
        await asyncio.gather(*(_http_caller(host, int(port), requests, i, deadline, latencies, errors)
                               for i in range(concurrency)))
    duration = time.perf_counter() - started
    latencies.sort()
    return {"transport": spec["transport"], "concurrency": concurrency, "seconds": round(duration, 3),
            "requests": len(latencies) + len(errors), "errors": len(errors), "error_kinds": sorted(set(map(str, errors))),
            "throughput_rps": len(latencies) / duration,
            "p50_ms": percentile_ms(latencies, 50), "p99_ms": percentile_ms(latencies, 99)}


def measure(spec: dict, token: str) -> dict:
    """One closed-loop run in a fresh generator process; adds the generator's CPU share of the machine."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        json.dump(spec, handle)
    try:
        process = subprocess.Popen([sys.executable, "-m", "loadtest.transports", "--run", handle.name],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
                                   env={**os.environ, TOKEN_VARIABLE: token, "PYTHONPATH": str(REPO)})
        _, status, usage = os.wait4(process.pid, 0)
        stdout, stderr = process.stdout.read(), process.stderr.read()
        if os.waitstatus_to_exitcode(status) != 0:
            raise RuntimeError(f"transport generator failed: {stderr[-2000:]}")
        result = json.loads(stdout.strip().splitlines()[-1])
        result["generator_cpu_share"] = (usage.ru_utime + usage.ru_stime) / (result["seconds"] * os.cpu_count())
        return result
    finally:
        os.unlink(handle.name)


def compare(server, name: str, concurrency: int, seconds: float, rounds: int, workdir: Path) -> dict:
    """The three transports against one running server (loadtest.servers.torchserve: ours), alternating
    over `rounds`; medians, and each one's throughput over /predictions'."""
    workdir.mkdir(parents=True, exist_ok=True)
    host, port = "127.0.0.1", server.entrypoint.ports["inference"]
    targets = {"predictions": f"{host}:{port}", "v2_rest": f"{host}:{port}", "v2_grpc": server.entrypoint.grpc_target}
    files = {transport: request_files(name, transport, host, port, server.token, workdir) for transport in TRANSPORTS}
    for transport in TRANSPORTS:  # warm-up: the first requests of each route are not measured
        measure({"transport": transport, "target": targets[transport], "requests": files[transport],
                 "concurrency": concurrency, "seconds": 1}, server.token)
    runs = {transport: [] for transport in TRANSPORTS}
    for _ in range(rounds):
        for transport in TRANSPORTS:
            runs[transport].append(measure({"transport": transport, "target": targets[transport],
                                            "requests": files[transport], "concurrency": concurrency,
                                            "seconds": seconds}, server.token))
    summary = {}
    for transport, results in runs.items():
        summary[transport] = {key: statistics.median(r[key] for r in results)
                              for key in ("throughput_rps", "p50_ms", "p99_ms", "generator_cpu_share")}
        summary[transport]["errors"] = sum(r["errors"] for r in results)
    base = summary["predictions"]["throughput_rps"]
    for transport in TRANSPORTS:
        summary[transport]["over_predictions"] = summary[transport]["throughput_rps"] / base if base else None
    return {"concurrency": concurrency, "seconds": seconds, "rounds": rounds, "transports": summary, "runs": runs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, required=True, help="a measurement spec (written by measure())")
    args = parser.parse_args()
    spec = json.loads(args.run.read_text())
    print(json.dumps(asyncio.run(closed_loop(spec, os.environ[TOKEN_VARIABLE]))), flush=True)


if __name__ == "__main__":
    main()
