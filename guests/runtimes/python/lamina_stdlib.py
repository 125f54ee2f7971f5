"""The standard library a handler can import.

The runtime carries CPython's modules as the build leaves them in memory, not as files:
a module nobody imported while the runtime was built does not exist in it. Everything
here is imported at build time so that handlers find it; modules WASI cannot back
(sockets, subprocesses, threads, ssl, ctypes) are left out.
"""

import importlib

MODULES = """
abc argparse array ast base64 binascii bisect calendar cmath codecs collections
collections.abc colorsys configparser contextlib contextvars copy csv dataclasses datetime
decimal difflib dis email email.mime.text email.utils enum errno fnmatch fractions
functools gettext glob graphlib gzip hashlib heapq hmac html html.parser http
http.client http.cookies inspect io ipaddress itertools json keyword linecache locale
logging logging.handlers math mimetypes numbers operator os pathlib pickle platform
pprint queue quopri random re reprlib secrets shlex shutil statistics string
stringprep struct tarfile tempfile textwrap time timeit tokenize tomllib traceback
types typing unicodedata urllib urllib.parse uuid warnings weakref xml xml.dom.minidom
xml.etree.ElementTree zipfile zlib zoneinfo
""".split()

for name in MODULES:
    try:
        importlib.import_module(name)
    except ImportError:
        pass
