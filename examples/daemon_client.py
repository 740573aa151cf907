#!/usr/bin/env python3
"""A codemode daemon client in plain Python (standard library only).

It registers a tool implemented here in Python, runs a TypeScript program that calls it, answers
the daemon's tools/call requests while the program runs, and prints the result.

    codemode serve --socket /tmp/codemode.sock &
    python3 examples/daemon_client.py /tmp/codemode.sock
"""
import json
import socket
import sys
import time

INVENTORY = {"apples": 12, "pears": 0, "plums": 31}


def connect(path, wait=30.0):
    """Connects, waiting for a daemon that is still starting to create its socket."""
    deadline = time.monotonic() + wait
    while True:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(path)
            return sock
        except (FileNotFoundError, ConnectionRefusedError):
            sock.close()
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def main(path):
    sock = connect(path)
    # Separate reader and writer: a text file opened "rw" drops what it has read ahead
    # whenever it is written to.
    reader = sock.makefile("r", encoding="utf-8", newline="\n")
    writer = sock.makefile("w", encoding="utf-8", newline="\n")
    next_id = 0

    def send(message):
        writer.write(json.dumps(message) + "\n")
        writer.flush()

    def request(method, params):
        """Sends a request and serves the daemon's messages until its response arrives."""
        nonlocal next_id
        next_id += 1
        my_id = next_id
        send({"jsonrpc": "2.0", "id": my_id, "method": method, "params": params})
        while True:
            message = json.loads(reader.readline())
            if message.get("method") == "tools/call":
                send(answer_tool_call(message))
            elif message.get("method") == "code/log":
                print("log:", message["params"]["message"])
            elif message.get("id") == my_id:
                if "error" in message:
                    raise RuntimeError(message["error"]["message"])
                return message["result"]

    info = request("initialize", {"clientInfo": {"name": "daemon_client.py"}})
    print("server:", info["serverInfo"]["name"], info["serverInfo"]["version"])
    request("tools/register", {
        "namespace": "shop",
        "description": "The shop's stock, served by a Python process.",
        "tools": [{
            "name": "stock-level",
            "description": "How many of an item are in stock.",
            "inputSchema": {
                "type": "object",
                "properties": {"item": {"type": "string"}},
                "required": ["item"],
            },
            "outputSchema": {"type": "integer", "minimum": 0},
        }],
    })
    declarations = request("tools/describe", {"names": ["shop.stockLevel"]})["declarations"]
    print(next(line.strip() for line in declarations.splitlines() if "function" in line))
    outcome = request("code/execute", {"code": """
        const items = ["apples", "pears", "plums"];
        const levels = await Promise.all(items.map((item) => shop.stockLevel({ item })));
        console.log("checked", items.length, "items");
        return items.filter((_, i) => levels[i] === 0);
    """})
    if not outcome["ok"]:
        raise RuntimeError(outcome["error"]["message"])
    print("ok:", outcome["ok"], "out of stock:", json.dumps(outcome["value"]), "tool calls:", outcome["stats"]["tool_calls"])
    sock.close()


def answer_tool_call(message):
    params = message["params"]
    if params["name"] == "stock-level":
        result = INVENTORY.get(params["arguments"]["item"])
        if result is not None:
            return {"jsonrpc": "2.0", "id": message["id"], "result": result}
    return {"jsonrpc": "2.0", "id": message["id"],
            "error": {"code": -32000, "message": "unknown item", "data": {"code": "not_found"}}}


if __name__ == "__main__":
    main(sys.argv[1])
