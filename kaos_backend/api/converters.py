"""URL converters of the API's routes."""
import re

from werkzeug.routing import BaseConverter


class OtherThan(BaseConverter):
    """`<other_than(inspect):job_id>`: one path segment, anything but the words given. Where a route with a
    literal segment (`/train/<ws>/inspect`) and a route with a variable in its place (`/train/<ws>/<job_id>`) share
    a URL, the literal one owns it for every method, as OpenAPI's path matching says: DELETE
    /train/<ws>/inspect is 405 (Allow: GET), not a kill of a job named "inspect"."""

    def __init__(self, url_map, *words: str):
        super().__init__(url_map)
        self.regex = "(?!(?:" + "|".join(re.escape(word) for word in words) + ")(?:/|$))[^/]+"
