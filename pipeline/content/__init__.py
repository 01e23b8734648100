"""Content stage: a draft file (front matter + Markdown) -> ``Issue``."""

from pipeline.content.issue import Issue, load_issue
from pipeline.content.merge_fields import MergeFields

__all__ = ["Issue", "MergeFields", "load_issue"]
