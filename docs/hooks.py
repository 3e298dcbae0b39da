"""mkdocs hooks (mkdocs.yml `hooks:`): README.md is the site's home page, kept in one copy.

The README is added to the site as `index.md`. Links in every page are written
relative to the page's own place in the repository, as GitHub reads them; they are
rewritten for the site: `docs/security.md` (from the README) becomes `security.md`,
`../README.md` (from a page) the home page. A link to a file outside docs/ (such as
`examples/` or `bench/README.md`) has no page on the site: it becomes plain text
naming the file. Any other link is left to mkdocs, whose strict build fails on one
that leads nowhere.
"""

from __future__ import annotations

import posixpath
import re
from pathlib import Path

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File, Files
from mkdocs.structure.pages import Page

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
HOME = "index.md"
DOCS = "docs/"

# Code (fenced blocks and inline spans) is matched only to be skipped: a link is
# an inline link or image `[text](target "title")`, or a reference definition.
_MARKDOWN = re.compile(
    r"(?P<fence>^[ \t]*(?P<marks>`{3,}|~{3,})[^\n]*\n.*?^[ \t]*(?P=marks)[ \t]*$)"
    r"|(?P<code>(?P<ticks>`+)(?:(?!\n[ \t]*\n).)+?(?P=ticks))"  # a span ends with its paragraph
    r"|(?P<link>(?P<bang>!?)\[(?P<text>[^\]\n]*)\]\((?P<target>[^)\s]+)(?P<title>\s+\"[^\"\n]*\")?\))"
    r"|(?P<definition>^[ ]{0,3}\[[^\]\n]+\]:[ \t]*)(?P<defined>\S+)",
    re.MULTILINE | re.DOTALL,
)
_EXTERNAL = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*:|//|#|/)")


def on_files(files: Files, *, config: MkDocsConfig) -> Files:
    """Add README.md to the site as its home page."""
    if files.get_file_from_path(HOME) is not None:
        raise PluginError(f"docs/{HOME} must not exist: the home page is README.md")
    files.append(File.generated(config, HOME, abs_src_path=str(README)))
    return files


def on_page_markdown(markdown: str, *, page: Page, config: MkDocsConfig, files: Files) -> str:
    """Rewrite the page's links from the repository's layout to the site's."""
    return rewrite_links(markdown, page.file.src_uri)


def rewrite_links(markdown: str, src_uri: str) -> str:
    """`markdown`'s links rewritten for the site page `src_uri` (`index.md`: the README)."""
    source_dir = "" if src_uri == HOME else posixpath.dirname(DOCS + src_uri)
    page_dir = posixpath.dirname(src_uri)

    def replace(match: re.Match[str]) -> str:
        if match["definition"]:
            target = _site_target(match["defined"], source_dir, page_dir)
            return match["definition"] + (target if target is not None else match["defined"])
        if not match["link"]:
            return match[0]
        target = _site_target(match["target"], source_dir, page_dir)
        if target is not None:
            return f"{match['bang']}[{match['text']}]({target}{match['title'] or ''})"
        return _plain(match["text"], match["target"], source_dir)

    return _MARKDOWN.sub(replace, markdown)


def _site_target(target: str, source_dir: str, page_dir: str) -> str | None:
    """The target as the site has it, or None for a file outside docs/."""
    if _EXTERNAL.match(target):
        return target
    path, suffix = _split(target)
    repository_path = _repository_path(path, source_dir)
    if repository_path == "README.md":
        site_path = HOME
    elif repository_path.startswith(DOCS):
        site_path = repository_path.removeprefix(DOCS)
    else:
        return None
    return posixpath.relpath(site_path, page_dir or ".") + suffix


def _split(target: str) -> tuple[str, str]:
    """A link target as its path and what follows it (`#anchor`, `?query`)."""
    cut = min((i for i in (target.find("#"), target.find("?")) if i >= 0), default=len(target))
    return target[:cut], target[cut:]


def _repository_path(path: str, source_dir: str) -> str:
    return posixpath.normpath(posixpath.join(source_dir, path))


def _plain(text: str, target: str, source_dir: str) -> str:
    """A link to a file the site does not have, as text naming that file."""
    path = _repository_path(_split(target)[0], source_dir)
    if target.endswith("/"):
        path += "/"
    named = text.strip("`")
    if named in (path, target):
        return f"`{path}`"
    return f"{text} (`{path}` in the repository)"
