"""HL7 v2: MDM^T02 in, ACK + DFT^P03 out (parsed back with hl7apy); unsigned, malformed, unprocessable."""

from __future__ import annotations

import base64

import pytest
from hl7apy.parser import parse_message

pytestmark = pytest.mark.issue(4)

ROUTE = "/v1/hl7v2/mdm"
ER7 = {"Content-Type": "x-application/hl7-v2+er7"}


def hl7_escape(text: str) -> str:
    return text.replace("\\", "\\E\\").replace("|", "\\F\\").replace("^", "\\S\\").replace("&", "\\T\\").replace("~", "\\R\\")


def mdm(note: str | None, status: str = "AU", control: str = "MSG00001", sep: str = "\r", version: str = "2.5",
        mtype: str = "MDM^T02^MDM_T02", ed: bool = False) -> str:
    segs = [f"MSH|^~\\&|EPIC|HOSP|BTXCODE|BILLING|20260115103000||{mtype}|{control}|P|{version}",
            "EVN|T02|20260115103000",
            "PID|1||MRN12345^^^HOSP^MR||DOE^JANE||19700101|F",
            "PV1|1|O|NEURO^^^HOSP||||1234^SMITH^ALEX",
            f"TXA|1|PN|TX|20260115103000|1234^SMITH^ALEX|||||||DOC-777|||||{status}"]
    if note is not None:
        if ed:
            segs.append(f"OBX|1|ED|NOTE^Procedure note||^TEXT^PLAIN^Base64^{base64.b64encode(note.encode()).decode()}||||||F")
        else:
            reps = "~".join(hl7_escape(line) for line in note.split("\n"))
            segs.append(f"OBX|1|TX|NOTE^Procedure note||{reps}||||||F")
    return sep.join(segs)


def test_signed_mdm_gives_ack_and_dft(client, auth, seed_note, store):
    before = store.counts()["suggestions"]
    r = client.post(ROUTE, content=mdm(seed_note).encode(), headers={**auth, **ER7})
    assert r.status_code == 200, r.text
    body = r.json()
    ack = parse_message(body["ack"], find_groups=False)
    assert ack.msh.msh_9.to_er7().startswith("ACK")
    assert ack.msa.msa_1.to_er7() == "AA" and ack.msa.msa_2.to_er7() == "MSG00001"
    dft = parse_message(body["dft"], find_groups=True)
    assert dft.msh.msh_9.to_er7() == "DFT^P03^DFT_P03"
    assert dft.validate() is True
    ft1s = [seg for seg in body["dft"].split("\r") if seg.startswith("FT1|")]
    assert len(ft1s) == body["lines"] >= 2
    codes = {f.split("|")[7].split("^")[0] for f in ft1s}
    assert "J0585" in codes
    for f in ft1s:
        fields = f.split("|")
        assert fields[4] == "20260115" and fields[6] == "CG" and fields[10]  # date, charge, quantity
        assert fields[19].split("^")[2] == "I10C"  # diagnoses with the ICD-10-CM system
        assert fields[25].split("^")[0] == fields[7].split("^")[0]
    assert "PID|1||MRN12345" in body["dft"]
    rec = client.get(f"/v1/suggestions/{body['suggestion_id']}", headers=auth).json()
    assert rec["channel"] == "hl7" and rec["external_id"] == "DOC-777"
    assert store.counts()["suggestions"] == before + 1


def test_newline_separated_and_ed_base64(client, auth, seed_note):
    r = client.post(ROUTE, content=mdm(seed_note, sep="\n").encode(), headers={**auth, **ER7})
    assert r.status_code == 200 and r.json()["dft"]
    r = client.post(ROUTE, content=mdm(seed_note, ed=True).encode(), headers={**auth, **ER7})
    assert r.status_code == 200 and r.json()["lines"] >= 2


def test_mllp_framed_message(client, auth, seed_note):
    r = client.post(ROUTE, content=b"\x0b" + mdm(seed_note).encode() + b"\x1c\r", headers={**auth, **ER7})
    assert r.status_code == 200 and r.json()["dft"]


@pytest.mark.parametrize("status", ["IP", "DO", "PA", ""])
def test_unsigned_document_is_acknowledged_not_coded(client, auth, seed_note, store, status):
    before = store.counts()
    r = client.post(ROUTE, content=mdm(seed_note, status=status).encode(), headers={**auth, **ER7})
    assert r.status_code == 200
    body = r.json()
    ack = parse_message(body["ack"], find_groups=False)
    assert ack.msa.msa_1.to_er7() == "AA" and body["dft"] is None and body["suggestion_id"] is None
    assert store.counts() == before


@pytest.mark.parametrize(("message", "status", "ack_code"), [
    pytest.param(b"this is not hl7", 400, "AR", id="not-hl7"),
    pytest.param(b"", 400, "AR", id="empty"),
    pytest.param(b"MSH|^~\\&|A|B|C|D|20260101||ADT^A01|X1|P|2.5\rPID|1", 400, "AR", id="wrong-type"),
    pytest.param(b"MSH|^~\\&|A|B|C|D|20260101||MDM^T02|X1|P|9.9\rEVN|T02", 400, "AR", id="bad-version"),
    pytest.param(b"MSH|^~\\&|A|B|C|D|20260101||MDM^T02|X1|P|2.5\rEVN|T02\rPID|1", 422, "AE", id="no-txa"),
    pytest.param("NOTE", 422, "AE", id="no-obx"),
    pytest.param("EMPTY", 422, "AE", id="empty-note"),
    pytest.param(b"\x00\x01\x02\xff\xfe binary", 400, "AR", id="binary"),
    pytest.param(b"MSH|^~\\&|A|B|C|D|20260101||MDM^T02|X1|P|2.5\r\x00\x00garbage\xff", 400, "AR", id="garbage-after-msh"),
])
def test_malformed_messages_get_ae_or_ar(client, auth, store, message, status, ack_code):
    if message == "NOTE":
        message = mdm(None).encode()
    elif message == "EMPTY":
        message = mdm("   ").encode()
    before = store.counts()
    r = client.post(ROUTE, content=message, headers={**auth, **ER7})
    assert r.status_code == status, r.text
    body = r.json()
    ack = parse_message(body["ack"], find_groups=False)
    assert ack.msa.msa_1.to_er7() == ack_code
    assert "ERR|" in body["ack"] and body["dft"] is None and body["error"]["message"]
    assert store.counts() == before


def test_control_id_echoed_on_reject(client, auth):
    r = client.post(ROUTE, content=b"MSH|^~\\&|A|B|C|D|20260101||ORU^R01|CTRL42|P|2.5\rPID|1", headers={**auth, **ER7})
    ack = parse_message(r.json()["ack"], find_groups=False)
    assert ack.msa.msa_2.to_er7() == "CTRL42" and ack.msh.msh_5.to_er7() == "A"


def test_oversized_note_in_obx(client, auth, store):
    before = store.counts()
    r = client.post(ROUTE, content=mdm("word " * 50_000).encode(), headers={**auth, **ER7})
    assert r.status_code == 413 and parse_message(r.json()["ack"], find_groups=False).msa.msa_1.to_er7() == "AE"
    assert store.counts() == before
