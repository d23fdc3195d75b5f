"""The hostile requests themselves, as bytes on the wire: Triton 2.51's crashes (a batch dimension past 2^32, a
duplicated JSON key, deep nesting), decompression and pixel bombs, and the management APIs a client must not reach,
over HTTP and gRPC. `pipelines.performance.hostile` sends them while good requests are timed.
"""

from __future__ import annotations

import http.client
import io
import json
import threading
from collections.abc import Callable, Iterable, Iterator

import numpy as np
import tritonclient.grpc as grpcclient
from PIL import Image
from tritonclient.utils import InferenceServerException

MNIST, ENSEMBLE = "mnist_onnx", "resnet50_ensemble"
KILLER = b'{"inputs":[{"name":"image","shape":[4294967297,28,28,1],"datatype":"FP32","data":[1]}]}'
MIB = 1 << 20
HEADER_LENGTH = "Inference-Header-Content-Length"
# the hostile client's address (loopback has all of 127/8): the front and the images' pixel budget tell it from the
# good client's (127.0.0.1) as they would tell two hosts apart
SOURCE = "127.0.0.2"


def zeros_png(side: int) -> bytes:
    """A square black PNG: about 100 KB on the wire for 6000x6000, and 0.5-0.7 s to decode."""
    out = io.BytesIO()
    Image.new("L", (side, side)).save(out, format="PNG", optimize=True)
    return out.getvalue()


def declared_jpeg(width: int, height: int) -> bytes:
    """A 16x16 JPEG whose header declares `width` x `height`: 633 bytes that decode (grey) at full size."""
    out = io.BytesIO()
    Image.new("RGB", (16, 16), (120, 30, 200)).save(out, format="JPEG")
    data = bytearray(out.getvalue())
    frame = data.find(b"\xff\xc0")  # the baseline frame header: length, precision, height, width
    data[frame + 5 : frame + 9] = height.to_bytes(2, "big") + width.to_bytes(2, "big")
    return bytes(data)


def binary_bytes_request(images: list[bytes], name: str = "image") -> tuple[bytes, dict[str, str]]:
    """A KServe v2 binary request of BYTES images (each prefixed by its 4-byte length), as tritonclient sends it."""
    data = b"".join(len(i).to_bytes(4, "little") + i for i in images)
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": name,
                    "shape": [len(images), 1],
                    "datatype": "BYTES",
                    "parameters": {"binary_data_size": len(data)},
                }
            ]
        }
    ).encode()
    return header + data, {
        "Inference-Header-Content-Length": str(len(header)),
        "Content-Type": "application/octet-stream",
    }


def send_raw_request(
    address: str,
    method: str,
    path: str,
    body: bytes | Iterable[bytes] = b"",
    headers: dict[str, str] | None = None,
    length: int | None = None,
    timeout: float = 120.0,
) -> int:
    """One raw request from `SOURCE`; the status, or 0 when the connection dropped without an answer (a crashed
    server). `length`: the Content-Length announced for a body sent in chunks."""
    host, port = address.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout, source_address=(SOURCE, 0))
    try:
        conn.putrequest(method, path, skip_accept_encoding=True)
        conn.putheader("Content-Length", str(len(body) if length is None else length))  # type: ignore[arg-type]
        for key, value in (headers or {}).items():
            conn.putheader(key, value)
        conn.endheaders()
        try:
            for chunk in [body] if isinstance(body, bytes) else body:
                conn.send(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass  # refused before it was read: the answer may already be there
        response = conn.getresponse()
        response.read()
        return response.status
    except (http.client.HTTPException, ConnectionError, TimeoutError):
        return 0
    finally:
        conn.close()


def post(
    address: str, path: str, body: bytes | Iterable[bytes], headers: dict[str, str], length: int | None = None
) -> int:
    return send_raw_request(address, "POST", path, body, headers, length)


def zero_chunks(total: int, chunk: int = MIB) -> Iterator[bytes]:
    block = b"\0" * chunk
    for _ in range(total // chunk):
        yield block


def grpc_status(call: Callable[[], object]) -> str:
    """The gRPC status a call ended with (OK, or the code's name, e.g. PERMISSION_DENIED)."""
    try:
        call()
    except InferenceServerException as exc:
        return str(exc.status() or "UNKNOWN").removeprefix("StatusCode.")
    return "OK"


DUPLICATE_SHAPE = (
    b'{"inputs":[{"name":"image","shape":[4294967297,28,28,1],"shape":[1,28,28,1],"datatype":"FP32","data":[1]}]}'
)
DUPLICATE_INPUTS = (
    b'{"inputs":[{"name":"image","shape":[4294967297,28,28,1],"datatype":"FP32","data":[1]}],'
    b'"inputs":[{"name":"image","shape":[1,28,28,1],"datatype":"FP32","data":[1]}]}'
)
NESTED = b"[" * 300_000  # killed Triton 2.51 through /generate (SIGSEGV)
SHM_REGISTER = b'{"key":"/t2t-hostile","offset":0,"byte_size":64}'
JSON = {"Content-Type": "application/json"}
BINARY = {"Content-Type": "application/octet-stream"}
MANAGEMENT_HTTP = (  # (method, path, body, headers): Triton's shared-memory, logging, repository, statistics, trace
    ("POST", "/v2/systemsharedmemory/region/hostile/register", SHM_REGISTER, JSON),
    ("POST", "/v2/logging", b'{"log_verbose_level":1}', JSON),
    ("POST", "/v2/repository/index", b"{}", JSON),
    ("GET", f"/v2/models/{MNIST}/stats", b"", JSON),
    ("POST", "/v2/trace/setting", b'{"trace_level":["TIMESTAMPS"]}', JSON),
)


def concurrently(count: int, send: Callable[[], int | str]) -> list[int | str]:
    """`count` copies of `send` at once, on threads: what each returned."""
    out: list[int | str] = []
    threads = [threading.Thread(target=lambda: out.append(send())) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return out


def management_grpc(address: str) -> list[str]:
    client = grpcclient.InferenceServerClient(address)
    try:
        return [
            grpc_status(call)
            for call in (
                lambda: client.register_system_shared_memory("hostile", "/t2t-hostile", 64),
                lambda: client.update_log_settings({"log_verbose_level": 1}),
                client.get_model_repository_index,
                lambda: client.get_inference_statistics(MNIST),
                lambda: client.update_trace_settings(settings={"trace_level": ["TIMESTAMPS"]}),
            )
        ]
    finally:
        client.close()


def grpc_gzip(address: str) -> list[str]:
    client = grpcclient.InferenceServerClient(address)
    item = grpcclient.InferInput("image", [1, 28, 28, 1], "FP32")
    item.set_data_from_numpy(np.zeros((1, 28, 28, 1), np.float32))
    try:
        return [grpc_status(lambda: client.infer(MNIST, [item], compression_algorithm="gzip"))]
    finally:
        client.close()
