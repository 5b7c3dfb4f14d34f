"""`corpus build` keeps to its tree (issue 19, attack 11): a symlink leading out of the source folder is
skipped and counted, unless --follow-symlinks."""

from __future__ import annotations

from typer.testing import CliRunner

from charrnn.cli import app

runner = CliRunner()


def test_symlinks_out_of_the_tree_are_skipped_and_counted(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("root:x:0:0:secret\n")
    outside_dir = tmp_path / "elsewhere"
    outside_dir.mkdir()
    (outside_dir / "b.c").write_text("int elsewhere;\n")
    src = tmp_path / "src" / "a"
    src.mkdir(parents=True)
    (src / "main.c").write_text("int main;\n")
    (src / "passwd.c").symlink_to(secret)  # a file link out of the tree
    (src / "dir").symlink_to(outside_dir, target_is_directory=True)  # a folder link out of it
    (src / "inside.c").symlink_to(src / "main.c")  # a link within the tree is fine
    out = tmp_path / "corpus.txt"
    result = runner.invoke(app, ["corpus", "build", str(tmp_path / "src"), "--glob", "**/*.c", "-o", str(out)])
    assert result.exit_code == 0, result.stderr
    assert "secret" not in out.read_text() and "elsewhere" not in out.read_text()
    assert out.read_text() == "int main;\n" * 2
    assert "symlinks out of the tree" in result.stderr and "a/passwd.c" in result.stderr

    followed = runner.invoke(app, ["corpus", "build", str(tmp_path / "src"), "--glob", "**/*.c", "-o", str(out),
                                   "--follow-symlinks", "--force"])
    assert followed.exit_code == 0 and "root:x:0:0:secret" in out.read_text()
