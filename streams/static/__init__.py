"""Static files of the web views (the live team map); a package so they ship with it."""
