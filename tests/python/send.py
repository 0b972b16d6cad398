"""Sends one CloudEvent with the CloudEvents Python SDK to a URL.

    send.py URL binary|structured ATTRIBUTES_JSON [--json DATA_JSON | --data TEXT | --data-base64 B64]

ATTRIBUTES_JSON is a JSON object of attributes (type and source are required;
the SDK chooses id, specversion and time when they are missing). Data:
  --json DATA_JSON    a JSON value handed to the SDK as a Python value (the SDK serializes it)
  --data TEXT         UTF-8 bytes handed to the SDK as bytes
  --data-base64 B64   arbitrary bytes handed to the SDK as bytes

(`cloudevents.http.to_binary`/`to_structured` are deprecated aliases of the
`cloudevents.conversion` functions used here.) The request is posted with urllib. Prints the HTTP status on the first line, then
one JSON line with what was sent: {"attributes": {...}, "headers": {...},
"body_base64": "..."} and then the response body on a third line (as text).
"""

import argparse
import base64
import json
import sys
import urllib.error
import urllib.request

from cloudevents.conversion import to_binary, to_structured
from cloudevents.http import CloudEvent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("url")
    parser.add_argument("mode", choices=["binary", "structured"])
    parser.add_argument("attributes", help="JSON object of CloudEvent attributes")
    data = parser.add_mutually_exclusive_group()
    data.add_argument("--json", dest="json_data", help="data as a JSON value")
    data.add_argument("--data", help="data as UTF-8 text, sent as bytes")
    data.add_argument("--data-base64", help="data as base64, sent as bytes")
    parser.add_argument("--timeout", type=float, default=10.0)
    args = parser.parse_args()

    attributes = json.loads(args.attributes)
    if not isinstance(attributes, dict):
        parser.error("ATTRIBUTES_JSON must be a JSON object")
    if args.json_data is not None:
        value = json.loads(args.json_data)
    elif args.data is not None:
        value = args.data.encode("utf-8")
    elif args.data_base64 is not None:
        value = base64.b64decode(args.data_base64, validate=True)
    else:
        value = None

    event = CloudEvent(attributes, value)
    headers, body = (to_binary if args.mode == "binary" else to_structured)(event)
    if isinstance(body, str):
        body = body.encode("utf-8")
    if body is None:
        body = b""

    request = urllib.request.Request(args.url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=args.timeout) as response:
            status, answer = response.status, response.read()
    except urllib.error.HTTPError as e:
        status, answer = e.code, e.read()

    print(status)
    print(
        json.dumps(
            {
                "attributes": {k: v for k, v in event.get_attributes().items()},
                "headers": dict(headers),
                "body_base64": base64.b64encode(body).decode("ascii"),
            },
            default=str,
        )
    )
    print(answer.decode("utf-8", errors="replace").replace("\n", " "))
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
