"""The SMTP sink of questline's tests (crates/testkit/src/smtp.rs): an aiosmtpd server on
127.0.0.1, on a port the system picks, that records every message it accepts and refuses
the recipients its rules name.

    python3 smtp_sink.py DIR RULES_JSON

DIR receives, per accepted message, N.eml (the raw data, as received) and one line of
received.jsonl: {"n", "mail_from", "rcpt_tos", "eml"}; per refused recipient, one line of
refused.jsonl: {"address", "code"}. Each line is written whole, after its .eml file.

RULES_JSON: [{"pattern": "*@bounce.test", "code": 550, "times": null}, ...]: a recipient
matching a pattern (fnmatch, case-insensitive) is refused with that code, the first `times`
times it matches (null: always); the first rule that applies decides.

Prints "listening on 127.0.0.1:PORT" once it accepts connections, and exits when its
standard input closes (the test that started it is gone) or on SIGTERM/SIGKILL.
"""

import asyncio
import fnmatch
import json
import os
import sys
import threading

from aiosmtpd.smtp import SMTP

REPLIES = {
    451: "451 4.3.0 Try again later (questline test sink)",
    550: "550 5.1.1 No such mailbox (questline test sink)",
}


class Sink:
    def __init__(self, directory, rules):
        self.directory = directory
        self.rules = [dict(rule, used=0) for rule in rules]
        self.count = 0

    def _append(self, name, record):
        with open(os.path.join(self.directory, name), "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        for rule in self.rules:
            if not fnmatch.fnmatchcase(address.lower(), rule["pattern"].lower()):
                continue
            if rule["times"] is not None and rule["used"] >= rule["times"]:
                continue
            rule["used"] += 1
            code = rule["code"]
            self._append("refused.jsonl", {"address": address, "code": code})
            return REPLIES.get(code, f"{code} Refused (questline test sink)")
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.count += 1
        eml = f"{self.count:04}.eml"
        data = envelope.original_content or envelope.content
        with open(os.path.join(self.directory, eml), "wb") as f:
            f.write(data)
        self._append(
            "received.jsonl",
            {"n": self.count, "mail_from": envelope.mail_from, "rcpt_tos": envelope.rcpt_tos, "eml": eml},
        )
        return f"250 OK queued as sink-{self.count}"


def exit_when_stdin_closes():
    sys.stdin.buffer.read()
    os._exit(0)


async def main(directory, rules):
    sink = Sink(directory, rules)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: SMTP(sink, hostname="sink.test"), host="127.0.0.1", port=0)
    port = server.sockets[0].getsockname()[1]
    print(f"listening on 127.0.0.1:{port}", flush=True)
    threading.Thread(target=exit_when_stdin_closes, daemon=True).start()
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], json.loads(sys.argv[2])))
