"""Read a coffer export with pyarrow and DuckDB and compare every value with
the source SQLite database, value by value.

Usage: check.py EXPORT_DIR SOURCE_DB KEEP_ROWID(0|1)

For each exported table, both readers must see exactly the source's columns
(plus __coffer_rowid only when the export was made with --keep-rowid), in
the column types the manifest gives, and every value the column's type can
hold, as that type; a NULL only for SQL NULL or for a value the type cannot
show, and then the part's misfit file must say so (an entry with a value),
which the DuckDB query documented in docs/FORMAT.md finds. Values shown in
a type other than their storage class have a misfit entry without a value
that names the class. Prints a JSON summary.
"""

import datetime
import decimal
import json
import math
import pathlib
import sqlite3
import sys

import duckdb
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

export, db, keep_rowid = pathlib.Path(sys.argv[1]), sys.argv[2], sys.argv[3] == "1"
manifest = json.loads((export / "manifest.json").read_text())
fmt = manifest["data_format"]
con = sqlite3.connect(db)
con.text_factory = bytes
duck = duckdb.connect()

CLASS = {"integer": 1, "real": 2, "text": 3, "blob": 4}
NATURAL = {"int64": "integer", "float64": "real", "utf8": "text", "binary": "blob"}
NOT_SHOWN = object()


def q(name):
    return '"' + name.replace('"', '""') + '"'


def sql_str(s):
    return "'" + str(s).replace("'", "''") + "'"


def arrow_type(t):
    if t.startswith("decimal("):
        p, s = t[len("decimal("):-1].split(",")
        return pa.decimal128(int(p), int(s))
    return {"int64": pa.int64(), "float64": pa.float64(), "utf8": pa.string(),
            "binary": pa.binary(), "date": pa.date32(),
            "timestamp": pa.timestamp("us")}[t]


def duck_type(t):
    if t.startswith("decimal("):
        return "DECIMAL" + t[len("decimal"):].replace(",", ",")
    return {"int64": "BIGINT", "float64": "DOUBLE", "utf8": "VARCHAR",
            "binary": "BLOB", "date": "DATE", "timestamp": "TIMESTAMP"}[t]


def shown(t, cls, v):
    """What a reader must see for a source value of storage class `cls` in a
    column of type `t`: the value as that type, None for NULL, NOT_SHOWN
    when the type cannot hold it exactly."""
    if cls == "null":
        return None
    if t == "int64":
        if cls == "integer":
            return v
        if (cls == "real" and math.isfinite(v) and v.is_integer()
                and -2**63 <= v < 2**63 and math.copysign(1, v) > 0):
            return int(v)
        return NOT_SHOWN
    if t == "float64":
        if cls == "real":
            return v
        if cls == "integer" and float(v) == v:
            return float(v)
        return NOT_SHOWN
    if t == "utf8":
        if cls == "text":
            try:
                return v.decode("utf-8")
            except UnicodeDecodeError:
                return NOT_SHOWN
        if cls == "integer":
            return str(v)
        if cls == "real":
            return ("real as text", v)
        return NOT_SHOWN
    if t == "binary":
        return bytes(v) if cls in ("blob", "text") else NOT_SHOWN
    if t == "date":
        return datetime.date.fromisoformat(v.decode())
    if t == "timestamp":
        return datetime.datetime.fromisoformat(v.decode())
    if t.startswith("decimal("):
        s = int(t[:-1].split(",")[1])
        text = repr(v) if cls == "real" else str(v)
        return decimal.Decimal(text).quantize(decimal.Decimal(1).scaleb(-s))
    raise AssertionError(f"unknown type {t}")


def same(want, got):
    if isinstance(want, tuple):
        return isinstance(got, str) and float(got) == want[1] and \
            math.copysign(1, float(got)) == math.copysign(1, want[1])
    if isinstance(want, float):
        return isinstance(got, float) and (got == want or (math.isnan(got) and math.isnan(want))) \
            and math.copysign(1, got) == math.copysign(1, want)
    if want is NOT_SHOWN:
        return got is None
    return type(got) is type(want) and got == want


def from_hex(v):
    if v is None:
        return None
    assert v.startswith("\\x"), f"a CSV blob is not in \\x hex form: {v!r}"
    return bytes.fromhex(v[2:])


def read_pyarrow(table, files):
    cols = table["columns"]
    if fmt == "parquet":
        got = pa.concat_tables([pq.read_table(f) for f in files])
    else:
        types = {c["name"]: (pa.string() if c["type"] == "binary" else arrow_type(c["type"]))
                 for c in cols}
        opts = pacsv.ConvertOptions(column_types=types, null_values=[""],
                                    strings_can_be_null=True,
                                    quoted_strings_can_be_null=False)
        got = pa.concat_tables([pacsv.read_csv(f, convert_options=opts) for f in files])
        for i, c in enumerate(cols):
            if c["type"] == "binary":
                arr = pa.array([from_hex(v) for v in got.column(i).to_pylist()], pa.binary())
                got = got.set_column(i, c["name"], arr)
    want = pa.schema([pa.field(c["name"], arrow_type(c["type"])) for c in cols])
    assert got.schema.equals(want), f"pyarrow: {table['name']}: {got.schema} != {want}"
    return [tuple(r[c["name"]] for c in cols) for r in got.to_pylist()]


def read_duckdb(table, files):
    cols = table["columns"]
    listed = "[" + ", ".join(sql_str(f) for f in files) + "]"
    if fmt == "parquet":
        rel = duck.sql(f"SELECT * FROM read_parquet({listed})")
    else:
        columns = "{" + ", ".join(
            f"{sql_str(c['name'])}: {sql_str('VARCHAR' if c['type'] == 'binary' else duck_type(c['type']))}"
            for c in cols) + "}"
        rel = duck.sql(
            f"SELECT * FROM read_csv({listed}, header = true, auto_detect = false, "
            f"delim = ',', quote = '\"', escape = '\"', columns = {columns}, "
            f"allow_quoted_nulls = false)")
    names = [d[0] for d in rel.description]
    assert names == [c["name"] for c in cols], f"duckdb: {table['name']}: columns {names}"
    types = [str(t) for t in rel.types]
    want = [("VARCHAR" if fmt == "csv" and c["type"] == "binary" else duck_type(c["type"]))
            for c in cols]
    assert types == want, f"duckdb: {table['name']}: types {types} != {want}"
    rows = rel.fetchall()
    if fmt == "csv":
        binary = [c["type"] == "binary" for c in cols]
        rows = [tuple(from_hex(v) if b else v for v, b in zip(r, binary)) for r in rows]
    return rows


def side_entries(table):
    """(row in table, column) -> (class, has value) from the misfit files."""
    out, offset = {}, 0
    for p in table["parts"]:
        if p.get("misfits"):
            for e in pq.read_table(export / p["misfits"]["path"]).to_pylist():
                out[(offset + e["row"], e["column"])] = (e["class"], e["value"] is not None)
        offset += p["rows"]
    return out


def hidden_by_duckdb(table):
    """The (row, column) of values the data file cannot show, found with the
    query docs/FORMAT.md gives (Parquet parts only)."""
    found, offset = set(), 0
    for p in table["parts"]:
        if p.get("misfits"):
            data, side = sql_str(export / p["path"]), sql_str(export / p["misfits"]["path"])
            for row, column in duck.sql(
                    f"SELECT m.row, m.column FROM read_parquet({data}, file_row_number = true) t "
                    f"JOIN read_parquet({side}) m ON m.row = t.file_row_number "
                    f"WHERE m.value IS NOT NULL").fetchall():
                found.add((offset + row, column))
        offset += p["rows"]
    return found


tables = values = 0
source_tables = {r[0].decode() for r in con.execute(
    "SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite%'")}
exported = {t["name"] for t in manifest["tables"]}
assert exported == source_tables, f"exported {sorted(exported)}, source has {sorted(source_tables)}"
assert not [o for o in manifest["objects"] if o["type"] in ("view", "trigger")]
for table in manifest["tables"]:
    name, cols = table["name"], table["columns"]
    files = [str(export / p["path"]) for p in table["parts"]]
    assert files, f"{name}: no data file (an empty table has one too)"
    cur = con.execute(f"SELECT * FROM {q(name)} LIMIT 0")
    source_cols = [d[0] for d in cur.description]
    rowid = table.get("rowid_column")
    if keep_rowid:
        assert (rowid is not None) == (rowid in [c["name"] for c in cols])
    else:
        assert rowid is None, f"{name}: {rowid} in an export made without --keep-rowid"
    data_cols = [c["name"] for c in cols if c["name"] != rowid]
    assert data_cols == source_cols, f"{name}: columns {data_cols} != {source_cols}"
    exprs = ", ".join(f"{'rowid' if c['name'] == rowid else q(c['name'])}, "
                      f"typeof({'rowid' if c['name'] == rowid else q(c['name'])})" for c in cols)
    src = con.execute(f"SELECT {exprs} FROM {q(name)} ORDER BY rowid").fetchall()
    assert len(src) == table["rows"], (name, len(src), table["rows"])
    want_rows, want_side = [], {}
    for r, row in enumerate(src):
        out = []
        for i, c in enumerate(cols):
            v, cls = row[2 * i], row[2 * i + 1].decode()
            w = shown(c["type"], cls, v)
            out.append(w)
            if w is NOT_SHOWN:
                want_side[(r, i)] = (CLASS[cls], True)
            elif c["type"] in NATURAL and cls != "null" and cls != NATURAL[c["type"]]:
                want_side[(r, i)] = (CLASS[cls], False)
        want_rows.append(out)
    got_side = side_entries(table)
    assert got_side == want_side, \
        f"{name}: misfit entries differ: only in the files " \
        f"{sorted(set(got_side.items()) - set(want_side.items()))[:5]}, only expected " \
        f"{sorted(set(want_side.items()) - set(got_side.items()))[:5]}"
    if fmt == "parquet":
        want_hidden = {k for k, (_, has) in want_side.items() if has}
        assert hidden_by_duckdb(table) == want_hidden, f"{name}: the documented query"
    for reader, read in (("pyarrow", read_pyarrow), ("duckdb", read_duckdb)):
        got = read(table, files)
        assert len(got) == len(want_rows), (reader, name, len(got), len(want_rows))
        for r, (w, h) in enumerate(zip(want_rows, got)):
            for i, c in enumerate(cols):
                assert same(w[i], h[i]), \
                    f"{reader} ({fmt}): {name} row {r}, column {c['name']} ({c['type']}): " \
                    f"expected {'NULL (not shown)' if w[i] is NOT_SHOWN else repr(w[i])}, read {h[i]!r}"
                values += 1
    tables += 1
print(json.dumps({"tables": tables, "rows": sum(t["rows"] for t in manifest["tables"]),
                  "values": values}))
