"""HL7 v2 in and out (hl7apy): MDM^T02 document notifications in; ACK and DFT^P03 charges out.

TXA-17 (document completion status) AU or LA means the note is signed and is coded; any other status
is acknowledged and not coded. The note is the OBX-5 values (TX/FT/ST repetitions are lines; ED is
Base64 text). Malformed or unsupported messages get an AR ACK; well-formed ones we cannot code (no TXA,
no note, bad text) get AE.
"""

from __future__ import annotations

import base64
import binascii
import re
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from hl7apy.core import Message
from hl7apy.exceptions import HL7apyException
from hl7apy.parser import parse_message, parse_segment

OUT_VERSION = "2.5"
SIGNED = {"AU", "LA"}
PROC_SYSTEM = {"CPT": "C4", "HCPCS": "HPC"}
DX_SYSTEM = {"ICD-10-CM": "I10C", "ICD-9-CM": "I9C"}


class Hl7Error(ValueError):
    """A message we refuse (ack_code AR) or cannot process (AE); ``err`` is an HL7 table 0357 code."""

    def __init__(self, ack_code: str, err: str, message: str, control_id: str = "", sender: tuple[str, str] = ("", "")):
        super().__init__(message)
        self.ack_code, self.err, self.message = ack_code, err, message
        self.control_id, self.sender = control_id, sender


@dataclass
class MdmDocument:
    control_id: str
    sender: tuple[str, str]  # (MSH-3 application, MSH-4 facility)
    status: str  # TXA-17
    signed: bool
    document_id: str
    date_of_service: str | None
    text: str
    pid: str | None = None
    pv1: str | None = None
    trigger: str = "T02"
    notes: list[str] = field(default_factory=list)


_ESCAPES = {"F": "|", "S": "^", "T": "&", "R": "~", "E": "\\"}


def unescape(value: str) -> str:
    """HL7 escape sequences (\\F\\ \\S\\ \\T\\ \\R\\ \\E\\ \\.br\\ \\Xhh\\) to text."""
    def sub(m: re.Match[str]) -> str:
        body = m.group(1)
        if body in _ESCAPES:
            return _ESCAPES[body]
        if body.lower() == ".br":
            return "\n"
        if body.startswith(("X", "x")):
            try:
                return bytes.fromhex(body[1:]).decode("utf-8", errors="replace")
            except ValueError:
                return ""
        return ""  # formatting commands (\H\ \N\ \.sp\ …) carry no text
    return re.sub(r"\\([^\\]{1,40})\\", sub, value)


def escape(value: str) -> str:
    out = value.replace("\\", "\\E\\").replace("|", "\\F\\").replace("^", "\\S\\").replace("&", "\\T\\")
    return out.replace("~", "\\R\\").replace("\r", " ").replace("\n", " ")


def normalise(raw: str) -> str:
    text = raw.strip("\x0b\x1c\r\n \t")
    text = text.replace("\r\n", "\r").replace("\n", "\r")
    return "\r".join(seg for seg in text.split("\r") if seg.strip())


def _msh_peek(er7: str) -> tuple[str, tuple[str, str]]:
    """Control id and sender from a raw MSH, for acknowledging messages hl7apy cannot parse."""
    first = er7.split("\r", 1)[0]
    if not first.startswith("MSH") or len(first) < 8:
        return "", ("", "")
    sep = first[3]
    fields = first.split(sep)
    get = lambda i: fields[i - 1] if len(fields) >= i else ""  # noqa: E731  (MSH-1 is the separator)
    return get(10)[:50], (get(3)[:50], get(4)[:50])


def parse_mdm(raw: str) -> MdmDocument:
    er7 = normalise(raw)
    control_id, sender = _msh_peek(er7)
    if not er7.startswith("MSH"):
        raise Hl7Error("AR", "100", "not an HL7 v2 message: the first segment must be MSH", control_id, sender)
    try:
        msg = parse_message(er7, find_groups=False)
    except HL7apyException as exc:
        kind = "203" if "version" in type(exc).__name__.lower() else "100"
        raise Hl7Error("AR", kind, f"malformed HL7 v2 message: {exc}", control_id, sender) from None
    except Exception as exc:  # hl7apy raises plain errors on some malformed input
        raise Hl7Error("AR", "100", f"malformed HL7 v2 message: {type(exc).__name__}", control_id, sender) from None
    try:
        mtype = msg.msh.msh_9.msh_9_1.to_er7()
        trigger = msg.msh.msh_9.msh_9_2.to_er7()
    except Exception:
        mtype = trigger = ""
    if (mtype, trigger) != ("MDM", "T02"):
        raise Hl7Error("AR", "200", f"unsupported message type {mtype}^{trigger}; this endpoint takes MDM^T02",
                       control_id, sender)
    names = [s.name for s in msg.children]
    if "TXA" not in names:
        raise Hl7Error("AE", "101", "MDM^T02 has no TXA segment", control_id, sender)
    txa = msg.txa
    status = txa.txa_17.to_er7().split("^")[0].strip().upper()
    document_id = txa.txa_12.to_er7() or control_id
    dos = None
    for fld in (txa.txa_4, txa.txa_6):
        value = fld.to_er7()
        if re.match(r"^\d{8}", value):
            dos = f"{value[:4]}-{value[4:6]}-{value[6:8]}"
            break
    lines: list[str] = []
    if "OBX" in names:
        for obx in msg.obx:
            vtype = obx.obx_2.to_er7().upper()
            for rep in obx.obx_5:
                value = rep.to_er7()
                if vtype == "ED":
                    parts = value.split("^")
                    try:
                        lines.append(base64.b64decode(parts[-1], validate=True).decode("utf-8"))
                    except (binascii.Error, ValueError, UnicodeDecodeError):
                        raise Hl7Error("AE", "102", "OBX-5 ED data is not Base64 UTF-8 text", control_id, sender) from None
                else:
                    lines.append(unescape(value.replace("^", " ")))
    pid = msg.pid.to_er7() if "PID" in names else None
    pv1 = msg.pv1.to_er7() if "PV1" in names else None
    return MdmDocument(control_id=control_id, sender=sender, status=status, signed=status in SIGNED,
                       document_id=document_id, date_of_service=dos, text="\n".join(lines), pid=pid, pv1=pv1)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y%m%d%H%M%S")


def _msh(msg: Message, mtype: str, receiver: tuple[str, str]) -> None:
    msg.msh.msh_3 = "BTXCODE"
    msg.msh.msh_4 = "BTXCODE"
    if receiver[0]:
        msg.msh.msh_5 = escape(receiver[0])
    if receiver[1]:
        msg.msh.msh_6 = escape(receiver[1])
    msg.msh.msh_7 = _now()
    msg.msh.msh_9 = mtype
    msg.msh.msh_10 = uuid.uuid4().hex[:20]
    msg.msh.msh_11 = "P"


def ack(code: str, control_id: str, receiver: tuple[str, str], text: str = "", err: str | None = None) -> str:
    """An ACK (MSA-1 AA/AE/AR, MSA-2 the original control id) with an ERR segment on AE/AR."""
    msg = Message("ACK", version=OUT_VERSION)
    _msh(msg, "ACK^T02^ACK", receiver)
    msg.msa.msa_1 = code
    msg.msa.msa_2 = escape(control_id)
    if text:
        msg.msa.msa_3 = escape(text[:80])
    if err:
        seg = msg.add_segment("ERR")
        seg.err_3 = f"{err}^{_ERR_TEXT.get(err, 'Application error')}^HL70357"
        seg.err_4 = "E"
        seg.err_8 = escape(text[:250])
    return msg.to_er7()


_ERR_TEXT = {"100": "Segment sequence error", "101": "Required field missing", "102": "Data type error",
             "200": "Unsupported message type", "203": "Unsupported version id", "207": "Application internal error"}


def _copy_segment(er7: str | None, name: str) -> Any:
    if not er7:
        return None
    try:
        return parse_segment(er7, version=OUT_VERSION)
    except Exception:
        return None


def dft(doc: MdmDocument, result: dict[str, Any], suggestion_id: str) -> str:
    """DFT^P03: one FT1 per suggested line (code, units, modifiers, diagnoses), DG1 per diagnosis."""
    msg = Message("DFT_P03", version=OUT_VERSION)
    _msh(msg, "DFT^P03^DFT_P03", doc.sender)
    msg.evn.evn_1 = "P03"
    msg.evn.evn_2 = _now()
    pid = _copy_segment(doc.pid, "PID")
    if pid is not None:
        msg.add(pid)
    else:
        msg.pid.pid_3 = "UNKNOWN"
    pv1 = _copy_segment(doc.pv1, "PV1")
    if pv1 is not None:
        msg.add(pv1)
    dos = (result.get("date_of_service") or "").replace("-", "")
    diagnoses = [d for d in result.get("diagnoses", []) if d.get("code")]
    dx_values = [f"{escape(d['code'])}^{escape(d.get('description') or '')}^{DX_SYSTEM.get(d['system'], d['system'])}"
                 for d in diagnoses]
    for i, line in enumerate(result.get("lines", []), start=1):
        group = msg.add_group("DFT_P03_FINANCIAL")
        ft1 = group.ft1
        ft1.ft1_1 = str(i)
        ft1.ft1_2 = f"{suggestion_id[:8]}-{i}"
        ft1.ft1_4 = dos or _now()[:8]
        ft1.ft1_5 = _now()[:8]
        ft1.ft1_6 = "CG"
        coded = f"{escape(line['code'])}^{escape(line.get('description') or '')}^{PROC_SYSTEM.get(line['system'], line['system'])}"
        ft1.ft1_7 = coded
        units = line.get("units")
        ft1.ft1_10 = str(int(units) if isinstance(units, float) and units.is_integer() else units)
        for value in dx_values[:12]:
            ft1.add_field("FT1_19").value = value
        ft1.ft1_25 = coded
        for mod in line.get("modifiers", []):
            ft1.add_field("FT1_26").value = f"{escape(mod)}^^{'CPTM' if mod.isdigit() else 'HPC'}"
    for i, value in enumerate(dx_values, start=1):
        dg1 = msg.add_segment("DG1")
        dg1.dg1_1 = str(i)
        dg1.dg1_3 = value
        dg1.dg1_6 = "F"
    return msg.to_er7()
