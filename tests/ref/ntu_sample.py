"""Writes two synthetic NTU RGB+D .skeleton files: tests/media/ntu_sample.skeleton for the "ntu"
suite (tests/test_ntu.c), 6 frames of one person raising the right hand, a second person in
frame 3 and no body in frame 5; and tests/media/ntu_wave.skeleton, 120 frames of one person
raising and lowering the right hand every 40 frames, long enough for CoST-GCN* to give outputs
(pipelines/examples/ntu.yaml, the "sksrc" suite). Numbers look like Kinect v2 output: camera space in metres,
depth (512x424) and colour (1920x1080) pixel positions, joint quaternions (zeros on the end
joints, as the sensor gives), 7 significant digits, CRLF line ends.

    /usr/bin/python3 tests/ref/ntu_sample.py      (from the repository root)
"""
import math
import random

# Kinect v2 joint order; offsets from SpineBase (x to the sensor's left, y up, z away), metres.
JOINTS = [
    ("SpineBase", 0.00, 0.00, 0.00), ("SpineMid", 0.00, 0.30, -0.02),
    ("Neck", 0.00, 0.58, -0.03), ("Head", 0.00, 0.74, -0.02),
    ("ShoulderLeft", -0.17, 0.50, -0.02), ("ElbowLeft", -0.24, 0.25, 0.00),
    ("WristLeft", -0.26, 0.02, -0.02), ("HandLeft", -0.26, -0.06, -0.03),
    ("ShoulderRight", 0.17, 0.50, -0.03), ("ElbowRight", 0.25, 0.26, 0.00),
    ("WristRight", 0.27, 0.03, -0.01), ("HandRight", 0.27, -0.05, -0.02),
    ("HipLeft", -0.08, -0.01, 0.00), ("KneeLeft", -0.10, -0.42, 0.02),
    ("AnkleLeft", -0.11, -0.80, 0.05), ("FootLeft", -0.12, -0.86, -0.05),
    ("HipRight", 0.08, -0.01, 0.00), ("KneeRight", 0.10, -0.42, 0.02),
    ("AnkleRight", 0.11, -0.80, 0.05), ("FootRight", 0.12, -0.86, -0.05),
    ("SpineShoulder", 0.00, 0.51, -0.03), ("HandTipLeft", -0.26, -0.14, -0.03),
    ("ThumbLeft", -0.23, -0.07, -0.06), ("HandTipRight", 0.27, -0.13, -0.02),
    ("ThumbRight", 0.24, -0.06, -0.05),
]
END_JOINTS = {"Head", "FootLeft", "FootRight", "HandTipLeft", "ThumbLeft", "HandTipRight",
              "ThumbRight"}
RIGHT_ARM = {"ElbowRight": 0.5, "WristRight": 1.0, "HandRight": 1.1, "HandTipRight": 1.2,
             "ThumbRight": 1.1}
BODIES = [1, 1, 2, 1, 0, 1]


def g7(v):
    """A number as the SDK's writer prints it: 7 significant digits, 'E-05' exponents."""
    if v == 0:
        return "0"
    return format(v, ".7g").replace("e", "E")


def quaternion(rng):
    w, x, y, z = (rng.uniform(-1, 1) for _ in range(4))
    n = math.sqrt(w * w + x * x + y * y + z * z)
    return [w / n, x / n, y / n, z / n]


def joint_line(rng, name, pos, inferred):
    x, y, z = pos
    depth = (256.0 + 365.5 * x / z, 212.0 - 365.5 * y / z)
    color = (975.0 + 1063.0 * x / z, 567.0 - 1063.0 * y / z)
    q = [0.0] * 4 if name in END_JOINTS else quaternion(rng)
    state = 1 if inferred else 2
    return " ".join([g7(v) for v in (x, y, z, *depth, *color, *q)] + [str(state)])


def body_lines(rng, body_id, base, lift):
    lean = (rng.uniform(-0.08, 0.08), rng.uniform(-0.08, 0.08))
    info = [str(body_id), "0", "1", "1", "1", "2", "0", g7(lean[0]), g7(lean[1]), "2"]
    lines = [" ".join(info), str(len(JOINTS))]
    for name, dx, dy, dz in JOINTS:
        up = RIGHT_ARM.get(name, 0.0) * lift
        pos = (base[0] + dx + rng.gauss(0, 0.004), base[1] + dy + up + rng.gauss(0, 0.004),
               base[2] + dz + rng.gauss(0, 0.006))
        inferred = name.startswith("Thumb") and rng.random() < 0.5
        lines.append(joint_line(rng, name, pos, inferred))
    return lines


def write(path, seed, schedule):
    """schedule: (bodies, lift of the right hand in metres) per frame."""
    rng = random.Random(seed)
    lines = [str(len(schedule))]
    for bodies, lift in schedule:
        lines.append(str(bodies))
        for b in range(bodies):
            if b == 0:
                lines += body_lines(rng, 72057594037931101, (0.2181, 0.1726, 3.7855), lift)
            else:
                lines += body_lines(rng, 72057594037931117, (-0.7415, 0.1302, 3.2710), 0.0)
    with open(path, "w", newline="\r\n") as out:
        out.write("\n".join(lines) + "\n")


def main():
    write("tests/media/ntu_sample.skeleton", 20161,
          [(bodies, 0.09 * f) for f, bodies in enumerate(BODIES)])
    wave = [(1, 0.225 * (1 - math.cos(2 * math.pi * f / 40))) for f in range(120)]
    write("tests/media/ntu_wave.skeleton", 20162, wave)


if __name__ == "__main__":
    main()
