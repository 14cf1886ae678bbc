"""`seqimpute fit-transform` / `transform` on the CSV shapes users write: the separator, pandas' header and index,
row labels, stray text, whole numbers, dates, duplicate names and overwrites. Each case once gave exit code 0 with a
wrong table; now each is read right or refused with one error that names the fix."""

import numpy as np
import pandas as pd
import pytest

from seqimpute import SequentialImputer
from seqimpute.cli import main
from seqimpute.data.csv_table import choose_separator, read_csv_table

FAST = ["--updates", "3", "--rollouts", "2", "--quiet"]


def table(n=40, seed=0, holes=0.2):
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, 1))
    X = np.hstack([z + 0.1 * rng.normal(size=(n, 1)), 2 * z, -z + 0.3]).round(3)
    miss = rng.random(X.shape) < holes
    miss[:, 0] &= np.arange(n) % 2 == 0  # every column keeps observed values
    return X, miss


def write(path, rows, sep=","):
    path.write_text("\n".join(sep.join(r) for r in rows) + "\n")


def cells(X, miss):
    return [["" if m else repr(float(v)) for v, m in zip(r, mr)] for r, mr in zip(X, miss)]


def fit(src, out, *extra):
    return main(["fit-transform", str(src), str(out), *FAST, *extra])


@pytest.mark.parametrize("sep", [";", "\t", "|"])
def test_a_semicolon_tab_or_bar_separated_csv_is_read_by_its_separator(tmp_path, capsys, sep):
    X, miss = table()
    src, out = tmp_path / "b.csv", tmp_path / "o.csv"
    write(src, [["a", "b", "c"]] + cells(X, miss), sep)
    assert fit(src, out) == 0
    printed = capsys.readouterr().out
    assert f"imputed {miss.sum()} missing value(s) of 40x3" in printed and "-separated" in printed
    rows = [line.split(sep) for line in out.read_text().splitlines()]
    assert rows[0] == ["a", "b", "c"] and all(len(r) == 3 and all(c != "" for c in r) for r in rows[1:])
    filled = np.array([[float(c) for c in r] for r in rows[1:]])
    assert np.array_equal(filled[~miss], X[~miss])


def test_the_separator_can_be_given_and_a_decimal_comma_is_read():
    text = "a;b\n1,5;2\n3,25;\n"
    assert choose_separator(text) == ";"
    assert choose_separator("a,b\n1,2\n") == ","


def test_a_pandas_to_csv_header_and_index_are_not_data(tmp_path, capsys):
    X, miss = table(n=30)
    df = pd.DataFrame(np.where(miss, np.nan, X), index=np.arange(100, 130))  # integer column names, an index
    src, out = tmp_path / "p.csv", tmp_path / "o.csv"
    df.to_csv(src)
    assert fit(src, out) == 0
    printed = capsys.readouterr().out
    assert "of 30x3" in printed and "row labels" in printed and "column names" in printed
    back = pd.read_csv(out, index_col=0)
    assert list(back.columns) == ["0", "1", "2"] and list(back.index) == list(range(100, 130))  # labels as read
    assert not back.isna().any().any() and np.array_equal(back.to_numpy()[~miss], X[~miss])
    # --no-header and --index-col none read every row and column as data (and say nothing of labels)
    plain = tmp_path / "plain.csv"
    write(plain, cells(X, miss))
    assert fit(plain, tmp_path / "o2.csv", "--no-header", "--index-col", "none") == 0
    assert "of 30x3" in capsys.readouterr().out


def test_an_id_column_is_carried_through_not_used_as_a_feature(tmp_path, capsys):
    X, miss = table(n=20)
    src, out = tmp_path / "ids.csv", tmp_path / "o.csv"
    write(src, [["id", "a", "b", "c"]] + [[str(1000 + i)] + r for i, r in enumerate(cells(X, miss))])
    assert fit(src, out) == 0
    printed = capsys.readouterr().out
    assert "of 20x3" in printed and "'id'" in printed and "not used as a feature" in printed
    lines = out.read_text().splitlines()
    assert lines[0] == "id,a,b,c" and [line.split(",")[0] for line in lines[1:]] == [str(1000 + i) for i in range(20)]


@pytest.mark.parametrize("bad, hint", [("abc", "--bad-cells missing"), ("1,5", "decimal comma")])
def test_one_stray_string_among_numbers_is_one_clear_error(tmp_path, capsys, bad, hint):
    X, miss = table()
    rows = cells(X, miss)
    rows[7][1] = f'"{bad}"'
    src = tmp_path / "s.csv"
    write(src, [["a", "b", "c"]] + rows)
    assert fit(src, tmp_path / "o.csv") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "column 'b'" in err and f"row 8: '{bad}'" in err and hint in err
    assert not (tmp_path / "o.csv").exists()
    # or, asked for, read as a missing value and filled
    assert fit(src, tmp_path / "o.csv", "--bad-cells", "missing") == 0
    assert "read as missing" in capsys.readouterr().out


def test_the_library_refuses_a_number_column_with_stray_text_too():
    X = pd.DataFrame({"a": [1.0, 2.0, 3.0, np.nan, 5.0, 6.0], "b": ["1.5", "2", "abc", "4", None, "6"]})
    with pytest.raises(Exception, match="column 'b' holds numbers but also 1 cell.*'abc'"):
        SequentialImputer(max_updates=2).fit(X)


def test_whole_numbers_stay_whole_and_present_cells_are_written_as_read(tmp_path):
    rng = np.random.default_rng(1)
    age = rng.integers(20, 60, size=40)
    rows = [["age", "score"]] + [[str(a), f"{a / 10 + rng.normal():.2f}"] for a in age]
    for i in (3, 9, 15):
        rows[i + 1][0] = ""
    rows[5][1] = "0010.50"  # an unusual spelling of a number: kept as written
    src, out = tmp_path / "ints.csv", tmp_path / "o.csv"
    write(src, rows)
    assert fit(src, out) == 0
    raw = out.read_bytes()
    assert b"\r" not in raw
    back = [line.split(",") for line in raw.decode().splitlines()]
    for r_in, r_out in zip(rows, back):
        assert all(o == i for i, o in zip(r_in, r_out) if i != "")  # present cells exactly as read
    filled_ages = [back[i + 1][0] for i in (3, 9, 15)]
    assert all(a.lstrip("-").isdigit() and 20 <= int(a) <= 59 for a in filled_ages)  # whole, in the seen range


def test_dates_and_duplicate_names_are_refused_as_the_library_does(tmp_path, capsys):
    src = tmp_path / "d.csv"
    write(src, [["when", "x"]] + [[f"2024-01-{i + 1:02d}", str(i + 0.5)] for i in range(12)] + [["", "1.0"]])
    assert fit(src, tmp_path / "o.csv") == 2
    assert "holds dates" in capsys.readouterr().err
    write(src, [["x", "x"], ["1.0", ""], ["2.0", "3.0"], ["", "4.0"]])
    assert fit(src, tmp_path / "o.csv") == 2
    assert "appear more than once" in capsys.readouterr().err


def test_out_may_not_replace_in_nor_save_replace_an_imputer_without_overwrite(tmp_path, capsys):
    X, miss = table()
    src = tmp_path / "in.csv"
    write(src, [["a", "b", "c"]] + cells(X, miss))
    before = src.read_text()
    assert fit(src, src) == 2
    assert "--overwrite" in capsys.readouterr().err and src.read_text() == before
    assert fit(src, tmp_path / "o.csv", "--save", str(tmp_path / "imp")) == 0
    assert fit(src, tmp_path / "o.csv", "--save", str(tmp_path / "imp")) == 2
    assert "already holds a saved imputer" in capsys.readouterr().err
    assert fit(src, tmp_path / "o.csv", "--save", str(tmp_path / "imp"), "--overwrite") == 0
    # transform with the saved imputer reads a semicolon file of new rows the same way
    new = tmp_path / "new.csv"
    write(new, [["a", "b", "c"]] + cells(X[:5], miss[:5]), ";")
    assert main(["transform", str(tmp_path / "imp"), str(new), str(tmp_path / "new_o.csv")]) == 0
    out = [line.split(";") for line in (tmp_path / "new_o.csv").read_text().splitlines()]
    assert out[0] == ["a", "b", "c"] and all(c != "" for r in out[1:] for c in r)


def test_a_constant_column_is_imputed_as_the_constant():
    X, miss = table()
    X[:, 1] = 7.0
    Xm = np.where(miss, np.nan, X)
    out = SequentialImputer(max_updates=5, n_rollouts=2, random_state=0).fit_transform(Xm)
    assert miss[:, 1].any() and np.all(out[:, 1] == 7.0)


def test_read_csv_table_says_what_it_found(tmp_path):
    src = tmp_path / "x.csv"
    write(src, [["", "a", "b"]] + [[str(i), str(i * 0.5), ""] for i in range(3)])
    t = read_csv_table(src)
    assert t.header == ["a", "b"] and t.labels == ["0", "1", "2"] and t.kinds == ["numeric", "numeric"]
    assert t.missing[:, 1].all() and any("row labels" in n for n in t.notes)
