"""A Python model of SEMANTICS §9 (mixer, location hash, thread ids).

Used by checklist item 58: the model is first checked against every
Appendix C vector, then compared with what the runtime reports for states
whose inputs are known (a fresh space's first run, a thread started from a
fresh space with no frame, the main thread).
"""

MASK64 = 2**64 - 1
C1 = 0xA0761D6478BD642F
C2 = 0xE7037ED1A0B428DB
STEP = 0x9E3779B97F4A7C15
HASH_MASK = 0x0000_FFFF_FFFF_FFFF


def mix_a(s, v):
    p = (s ^ C1) * (v ^ C2)
    return (p & MASK64) ^ (p >> 64)


def mix_b(s, v):
    a = s ^ C1
    b = v ^ C2
    a ^= a >> 32
    b ^= b >> 32
    a = (a * C2) & MASK64
    b = (b * C1) & MASK64
    return a ^ b ^ (a >> 32) ^ (b >> 32)


def N(h):
    return 0xFFFF_FFFF_FFFF_FFFE if h == MASK64 else h


class Model:
    def __init__(self, variant):
        self.variant = variant
        self.M = mix_a if variant == "A" else mix_b
        self.INIT = N(self.M(0x243F6A8885A308D3, 0x13198A2E03707344))

    def absorb(self, h, data):
        M = self.M
        h = N(M(h, len(data)))
        full = len(data) // 8 * 8
        for i in range(0, full, 8):
            h = N(M(h, int.from_bytes(data[i : i + 8], "little")))
        if len(data) > full:
            h = N(M(h, int.from_bytes(data[full:], "little")))
        return h

    def mix_frame(self, h, instr, ord_):
        h = N(self.M(h, instr & 0x7FFF_FFFF_FFFF_FFFF))
        if ord_ != 0:
            h = N(self.M(h, 0x8000_0000_0000_0000 | ord_))
        return h

    def location_hash(self, seed, root_counter, words):
        h = N(seed)
        if root_counter != 0:
            h = self.mix_frame(h, 0, root_counter)
        for k in range(0, len(words), 2):
            h = self.mix_frame(h, words[k], words[k + 1])
        return h

    @staticmethod
    def fix(x):
        x = N(x)
        return 1 if x == 0 else x

    def compose(self, sid, h):
        bits = N(h) & HASH_MASK
        if bits == 0:
            bits = 1
        return self.fix(((sid & 0xFFFF) << 48) | bits)

    def root_seed(self, seed=b"retrace"):
        return self.compose(0, self.absorb(self.absorb(self.INIT, b"retrace.root-seed.v2"), seed))

    def thread_seed(self, parent_tid, words, seed=b"retrace"):
        """`thread_seed(P)`; `parent_tid` None or 0 = no parent."""
        h = self.absorb(self.INIT, b"retrace.thread-id.v2")
        if not parent_tid:
            h = self.M(h, self.root_seed(seed))
        else:
            h = self.M(h, parent_tid)
            for k in range(0, len(words), 2):
                h = self.mix_frame(h, words[k], words[k + 1])
        return self.fix(h)

    def assign(self, sid, parent_tid, words, seed=b"retrace"):
        """The id without collision retries."""
        return self.compose(sid, self.thread_seed(parent_tid, words, seed))

    def retry(self, sid, ident, k=STEP):
        return self.compose(sid, self.M(ident, k))


# Appendix C: quantity -> (A, B).
APPENDIX_C = {
    "M(0, 0)": (0x1FF5C2923A788D2C, 0x9AFADB460E9C13B9),
    "M(1, 2)": (0xF7858B38A8499BE9, 0x30E29D50F5C52466),
    "INIT": (0x1E865780C4FC0EB8, 0x3924182AD1990C3A),
    "root_seed(retrace)": (0x0000E290CFA04305, 0x000081B2E239D750),
    "main id, seed retrace": (0x00009058C016E56B, 0x00009439969037A0),
    "main id, seed retrace-smoke-a": (0x000064CF81BDA91E, 0x0000CB4B828EDEF1),
    "main id, seed ''": (0x0000C181654C2EAA, 0x00005F99840E986D),
    "location_hash rc 0 (10,0),(4,2)": (0xE68F5483AD96DA8E, 0xA54347551B48426F),
    "location_hash rc 3 (10,0)": (0xB5639F58967A9F43, 0x25D6426D1F20E61A),
    "thread_seed (10,0),(4,2)": (0xBA502E7682E66C60, 0x50E494B4262C8835),
    "child id space 0": (0x00002E7682E66C60, 0x000094B4262C8835),
    "child id space 1": (0x00012E7682E66C60, 0x000194B4262C8835),
    "first collision retry": (0x0000F5D9335C1D77, 0x00005F118DFCCFA5),
}


def compute_appendix_c(m):
    main = m.assign(0, None, ())
    frames = (10, 0, 4, 2)
    ts = m.thread_seed(main, frames)
    child0 = m.compose(0, ts)
    return {
        "M(0, 0)": m.M(0, 0),
        "M(1, 2)": m.M(1, 2),
        "INIT": m.INIT,
        "root_seed(retrace)": m.root_seed(b"retrace"),
        "main id, seed retrace": main,
        "main id, seed retrace-smoke-a": m.assign(0, None, (), b"retrace-smoke-a"),
        "main id, seed ''": m.assign(0, None, (), b""),
        "location_hash rc 0 (10,0),(4,2)": m.location_hash(main, 0, frames),
        "location_hash rc 3 (10,0)": m.location_hash(main, 3, (10, 0)),
        "thread_seed (10,0),(4,2)": ts,
        "child id space 0": child0,
        "child id space 1": m.compose(1, ts),
        "first collision retry": m.retry(0, child0),
    }


def check_appendix_c(variant):
    """Return the list of mismatches of the model against Appendix C (empty = all reproduced)."""
    m = Model(variant)
    got = compute_appendix_c(m)
    col = 0 if variant == "A" else 1
    return [
        f"{name}: model {got[name]:#018x}, Appendix C {want[col]:#018x}"
        for name, want in APPENDIX_C.items()
        if got[name] != want[col]
    ]
