"""Quick reply CSV export and import: round trips, upserts, all-or-nothing refusals."""

from __future__ import annotations

import csv
import io

from shared.config import get_settings
from shared.inbox import quick_reply_csv
from tests.inbox_team.conftest import actions
from tests.multipart import form

BASE = "/api/quick-replies"
CSV = {"Content-Type": "text/csv"}


def upload(ws, data: bytes | str, token=None, headers=CSV):
    body = data.encode() if isinstance(data, str) else data
    return ws.call("POST", f"{BASE}/import", token=token, body=body, headers=headers)


def export(ws, token=None):
    return ws.call("GET", f"{BASE}/export", token=token)


def shared(ws) -> dict[str, dict]:
    return {
        r["shortcut"]: r for r in ws.call("GET", BASE, params={"scope": "shared"}).json["items"]
    }


def test_export_is_rfc4180_csv_of_shared_replies_only(workspace, other_workspace):
    ws = workspace
    tricky = 'Say "hi", then\r\nwait'
    for shortcut, content in (("b-greet", tricky), ("a-formula", "=HYPERLINK(1)")):
        body = {"shortcut": shortcut, "title": "Tï", "content": content, "scope": "shared"}
        ws.call("POST", BASE, json=body)
    ws.call("POST", BASE, json={"shortcut": "personal", "title": "p", "content": "p"})
    other_workspace.call(
        "POST", BASE, json={"shortcut": "foreign", "title": "f", "content": "f", "scope": "shared"}
    )
    resp = export(ws)
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"] == "text/csv; charset=utf-8"
    assert resp.headers["content-disposition"].startswith('attachment; filename="quick-replies-')
    text = resp.content.decode("utf-8")
    assert text.startswith("shortcut,title,content\r\n")
    assert '"Say ""hi"", then\r\nwait"' in text
    rows = list(csv.reader(io.StringIO(text, newline="")))
    # APPSEC: a formula is exported inert, behind an apostrophe.
    assert rows == [
        ["shortcut", "title", "content"],
        ["a-formula", "Tï", "'=HYPERLINK(1)"],
        ["b-greet", "Tï", tricky],
    ]


def test_export_and_import_need_quick_replies_manage(workspace):
    ws = workspace
    _, token = ws.create_agent()
    assert export(ws, token).status_code == 403
    refused = upload(ws, "shortcut,title,content\r\na,b,c\r\n", token)
    assert refused.status_code == 403
    assert shared(ws) == {}
    _, supervisor_token = ws.create_agent(role="supervisor")
    assert export(ws, supervisor_token).status_code == 200


def test_round_trip_and_update_by_shortcut(workspace):
    ws = workspace
    first = upload(
        ws,
        'shortcut,title,content\r\nhello,Hello,"Hi, ""friend""\nhow are you?"\r\n'
        "formula,Math,'=1+1\r\nbye,Bye,See you\r\n",
    )
    assert first.status_code == 200, first.text
    assert first.json == {"created": 3, "updated": 0, "unchanged": 0}
    before = shared(ws)
    assert before["hello"]["content"] == 'Hi, "friend"\nhow are you?'
    assert before["formula"]["content"] == "=1+1"

    again = upload(ws, export(ws).content)
    assert again.json == {"created": 0, "updated": 0, "unchanged": 3}
    assert shared(ws) == before

    # Columns in another order, a BOM and a shortcut in capitals: updates, never duplicates.
    changed = upload(ws, "\ufeffcontent,SHORTCUT,title\r\nSee you soon,BYE,Bye\r\nnew,fresh,F\r\n")
    assert changed.status_code == 200, changed.text
    assert changed.json == {"created": 1, "updated": 1, "unchanged": 0}
    after = shared(ws)
    assert set(after) == {"hello", "formula", "bye", "fresh"}
    assert after["bye"]["id"] == before["bye"]["id"]
    assert after["bye"]["content"] == "See you soon"
    imports = [a for a in actions(ws, "quick_reply") if a.action == "quick_reply.imported"]
    assert [a.after for a in imports] == [
        {"created": 3, "updated": 0, "unchanged": 0},
        {"created": 0, "updated": 0, "unchanged": 3},
        {"created": 1, "updated": 1, "unchanged": 0},
    ]


def test_a_bad_row_refuses_the_whole_file_naming_its_line(workspace):
    ws = workspace
    data = (
        "shortcut,title,content\r\n"
        "good,Good,fine\r\n"  # line 2
        'multi,Multi,"spans\r\nthree\r\nlines"\r\n'  # lines 3-5
        "\r\n"  # line 6, blank: skipped
        "bad shortcut,Title,content\r\n"  # line 7
        "dup,,content\r\n"  # line 8: blank title
        "DUP,Again,content\r\n"  # line 9: duplicate of line 8
        "short,row\r\n"  # line 10
    )
    resp = upload(ws, data)
    assert resp.status_code == 422, resp.text
    assert resp.json["error"]["code"] == "validation_error"
    assert resp.json["error"]["details"] == [
        {
            "line": 7,
            "field": "shortcut",
            "message": "1 to 64 characters among a-z, 0-9, '_' and '-'",
        },
        {"line": 8, "field": "title", "message": "must not be blank"},
        {"line": 9, "field": "shortcut", "message": "duplicate of line 8"},
        {"line": 10, "field": "row", "message": "expected 3 fields, got 2"},
    ]
    assert shared(ws) == {}
    too_long = upload(ws, f"shortcut,title,content\r\nok,{'t' * 201},{'c' * 4097}\r\n")
    assert [(d["line"], d["field"]) for d in too_long.json["error"]["details"]] == [
        (2, "title"),
        (2, "content"),
    ]


def test_wrong_columns_are_named(workspace):
    resp = upload(workspace, "shortcut,title,body,tags\r\na,b,c,d\r\n")
    assert resp.status_code == 422, resp.text
    assert resp.json["error"]["details"] == [
        {"line": 1, "field": "header", "message": "missing column 'content'"},
        {"line": 1, "field": "header", "message": "unknown column 'body'"},
        {"line": 1, "field": "header", "message": "unknown column 'tags'"},
    ]
    empty = upload(workspace, b"")
    assert empty.status_code == 422
    assert len(empty.json["error"]["details"]) == 3


def test_non_utf8_files_are_refused(workspace):
    latin1 = "shortcut,title,content\r\ncafe,Café,crème brûlée\r\n".encode("latin-1")
    resp = upload(workspace, latin1)
    assert resp.status_code == 422, resp.text
    detail = resp.json["error"]["details"][0]
    assert detail["field"] == "encoding" and detail["line"] == 2
    assert shared(workspace) == {}


def test_a_bad_byte_after_a_bom_is_named_where_it_is(workspace):
    """Excel's "CSV UTF-8" starts with a BOM; a Windows-1252 quote pasted on line 4 must be
    reported on line 4, as that byte at its offset in the file (the BOM shifted both)."""
    text = b"shortcut,title,content\r\na,A,first\r\nb,B,second\r\nc,C,"
    raw = b"\xef\xbb\xbf" + text + b"\x93quoted\x94\r\n"
    resp = upload(workspace, raw)
    assert resp.status_code == 422, resp.text
    offset = raw.index(b"\x93")
    assert resp.json["error"]["details"] == [
        {
            "line": 4,
            "field": "encoding",
            "message": f"byte 0x93 at offset {offset} is not UTF-8",
        }
    ]


def test_malformed_csv_is_a_422(workspace):
    resp = upload(workspace, 'shortcut,title,content\r\na,"unterminated,c\r\n')
    assert resp.status_code == 422, resp.text
    assert resp.json["error"]["details"][0]["field"] == "file"


def test_size_and_row_limits(workspace):
    rows = "".join(f"s{i},T,C\r\n" for i in range(5001))
    too_many = upload(workspace, "shortcut,title,content\r\n" + rows)
    assert too_many.status_code == 422, too_many.text
    assert too_many.json["error"]["details"] == [
        {"line": 5002, "field": "file", "message": "too many rows"}
    ]
    assert shared(workspace) == {}

    limit = get_settings().max_body_bytes
    oversize = upload(workspace, b"shortcut,title,content\r\n" + b"a,b,c\r\n" * (limit // 7 + 1))
    assert oversize.status_code == 413
    assert oversize.json["error"]["code"] == "payload_too_large"

    just_enough = upload(workspace, "shortcut,title,content\r\n" + rows.split("s5000")[0])
    assert just_enough.json == {"created": 5000, "updated": 0, "unchanged": 0}


def test_content_types(workspace):
    data = b"shortcut,title,content\r\nform,Form,from a form\r\n"
    json_body = upload(workspace, data, headers={"Content-Type": "application/json"})
    assert json_body.status_code == 415
    body, multipart = form(
        data, filename="replies.csv", content_type="text/csv", before={"note": "ignored"}
    )
    resp = upload(workspace, body, headers=multipart)
    assert resp.status_code == 200, resp.text
    assert resp.json == {"created": 1, "updated": 0, "unchanged": 0}
    boundary = multipart["Content-Type"].split("boundary=")[1]
    no_file = upload(
        workspace,
        f'--{boundary}\r\nContent-Disposition: form-data; name="x"\r\n\r\ny\r\n--{boundary}--\r\n',
        headers=multipart,
    )
    assert no_file.status_code == 422
    broken = upload(workspace, b"--nope", headers=multipart)
    assert broken.status_code == 400
    body, multipart = form(
        data, filename="réponses.csv", content_type="text/csv", header_encoding="latin-1"
    )
    latin1_name = upload(workspace, body, headers=multipart)
    assert latin1_name.status_code == 400, latin1_name.text
    assert latin1_name.json["error"]["details"][0]["field"] == "file"


def test_export_streams_every_shared_reply_in_batches(workspace):
    """API.md: the export streams its CSV. Built whole in memory, a tenant's thousands of
    4 KB replies (imports of 5,000 rows each, no cap) were held three times over."""
    ws = workspace
    count = quick_reply_csv.EXPORT_BATCH * 2 + 7
    rows = "".join(f"r{n:05d},Title {n},Content {n}\r\n" for n in range(count))
    assert upload(ws, "shortcut,title,content\r\n" + rows).status_code == 200

    resp = export(ws)

    assert resp.status_code == 200, resp.text
    assert "content-length" not in resp.headers  # streamed, not buffered whole
    exported = list(csv.reader(io.StringIO(resp.content.decode("utf-8"), newline="")))
    assert exported[0] == ["shortcut", "title", "content"]
    assert exported[1:] == [[f"r{n:05d}", f"Title {n}", f"Content {n}"] for n in range(count)]
