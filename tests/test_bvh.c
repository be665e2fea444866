/* Suite "bvh": the BVH reader (io/bvh.h) on the CMU capture in tests/media against the numpy
 * reference's golden (tests/ref/bvh_fk.py), on small hand-written files with known positions
 * (channel orders, roots without position channels, resampling, non-finite values), and on
 * hostile input: every prefix of a valid file, broken structure, bounds and random bytes. */
#include <CUnit/CUnit.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bvh.h"
#include "npy.h"
#include "util.h"

#define TOL 1e-5
#define GOLDEN_TOL 1e-4
#define CMU "media/assimp-testmodels__cmu_01_01.bvh"

/* ---- helpers ---------------------------------------------------------------------------- */

/* Position channel c (0 x, 1 y, 2 z) of joint j in frame t. */
static float pos(const skel_seq *s, int t, int c, int j)
{
    return s->data[((size_t)t * 3 + (size_t)c) * (size_t)s->v + (size_t)j];
}

static void check_pos(const skel_seq *s, int t, int j, double x, double y, double z)
{
    double want[3] = {x, y, z};
    for (int c = 0; c < 3; c++) {
        double got = pos(s, t, c, j);
        if (fabs(got - want[c]) > TOL)
            fprintf(stderr, "\nframe %d joint %d axis %d: got %g, want %g\n", t, j, c, got,
                    want[c]);
        CU_ASSERT_DOUBLE_EQUAL(got, want[c], TOL);
    }
}

/* Reads text[len] (NULs allowed) from a file named `name` under the temp dir. */
static int read_bytes(const char *name, const void *text, size_t len, double fps, skel_seq *s,
                      bvh_info *info, cin_err *err)
{
    const char *path = tu_tmp_path(name);
    CU_ASSERT_FATAL(tu_write_file(path, text, len) == 0);
    return bvh_read_ex(path, fps, s, info, err);
}

static int read_text(const char *name, const char *text, double fps, skel_seq *s,
                     bvh_info *info, cin_err *err)
{
    return read_bytes(name, text, strlen(text), fps, s, info, err);
}

/* text must be refused with code, the message starting "<path>:<line>: " and holding want. */
static void check_refused(const char *name, const char *text, int code, int line,
                          const char *want)
{
    skel_seq s = {0};
    bvh_info info = {0};
    cin_err err = {0};
    int rc = read_text(name, text, 0, &s, &info, &err);
    char prefix[300];
    snprintf(prefix, sizeof prefix, "%s:%d: ", tu_tmp_path(name), line);
    int ok = rc == code && strncmp(err.msg, prefix, strlen(prefix)) == 0 &&
             strstr(err.msg, want) != NULL;
    if (!ok)
        fprintf(stderr, "\n%s: rc %d, \"%s\"; want %d, \"%s...%s...\"\n", name, rc, err.msg,
                code, prefix, want);
    CU_ASSERT(ok);
    CU_ASSERT_PTR_NULL(s.data);
    CU_ASSERT_PTR_NULL(info.names);
    CU_ASSERT_EQUAL(s.t, 0);
}

/* A chain a -> b -> c with End Site: a moves and turns about Z, b turns about Z; 2 frames. */
static const char chain[] =
    "HIERARCHY\n"
    "ROOT a\n"
    "{\n"
    "  OFFSET 0 0 0\n"
    "  CHANNELS 6 Xposition Yposition Zposition Zrotation Yrotation Xrotation\n"
    "  JOINT b\n"
    "  {\n"
    "    OFFSET 1 0 0\n"
    "    CHANNELS 1 Zrotation\n"
    "    JOINT c\n"
    "    {\n"
    "      OFFSET 1 0 0\n"
    "      CHANNELS 0\n"
    "      End Site\n"
    "      {\n"
    "        OFFSET 0 0 1\n"
    "      }\n"
    "    }\n"
    "  }\n"
    "}\n"
    "MOTION\n"
    "Frames: 2\n"
    "Frame Time: 0.5\n"
    "0 0 0 0 0 0 0\n"
    "1 2 3 90 0 0 90\n";

/* One root "r" with the given CHANNELS line and OFFSET, a child "k" at offset (1, 0, 0) with
 * no channels, and the given motion lines (after "Frames: n"). */
static void one_root(char *buf, size_t cap, const char *offset, const char *channels,
                     const char *motion)
{
    snprintf(buf, cap,
             "HIERARCHY\nROOT r\n{\n OFFSET %s\n CHANNELS %s\n JOINT k\n {\n  OFFSET 1 0 0\n"
             "  CHANNELS 0\n  End Site\n  {\n   OFFSET 1 0 0\n  }\n }\n}\nMOTION\n%s",
             offset, channels, motion);
}

/* ---- the CMU capture against the reference --------------------------------------------- */

static const char *const cmu_names[31] = {
    "Hips", "LHipJoint", "LeftUpLeg", "LeftLeg", "LeftFoot", "LeftToeBase", "RHipJoint",
    "RightUpLeg", "RightLeg", "RightFoot", "RightToeBase", "LowerBack", "Spine", "Spine1",
    "Neck", "Neck1", "Head", "LeftShoulder", "LeftArm", "LeftForeArm", "LeftHand",
    "LeftFingerBase", "LFingers", "LThumb", "RightShoulder", "RightArm", "RightForeArm",
    "RightHand", "RightFingerBase", "RFingers", "RThumb",
};

/* The golden's rows (tests/ref/bvh_fk.py): 5 source frames, then 5 at 30 fps, 5 at 25 fps. */
static const struct {
    double fps;
    int frames;                 /* output frames at that rate */
    int keep[5];
} cmu_rows[3] = {
    {0, 2752, {0, 1, 100, 1000, 2751}},
    {30, 688, {0, 1, 333, 500, 687}},
    {25, 574, {0, 1, 201, 400, 573}},
};

static void test_cmu_capture_matches_numpy_reference(void)
{
    int ndim;
    int64_t shape[NPY_MAX_DIMS];
    float *golden = NULL;
    cin_err err;
    CU_ASSERT_FATAL(npy_read_f32("golden/bvh_cmu_01_01.npy", &ndim, shape, &golden, &err) == 0);
    CU_ASSERT_FATAL(ndim == 3 && shape[0] == 15 && shape[1] == 3 && shape[2] == 31);
    size_t row = 3 * 31;
    for (int r = 0; r < 3; r++) {
        skel_seq s = {0};
        int rc = bvh_read_ex(CMU, cmu_rows[r].fps, &s, NULL, &err);
        if (rc)
            fprintf(stderr, "\n%s\n", err.msg);
        CU_ASSERT_FATAL(rc == 0);
        CU_ASSERT_EQUAL(s.t, cmu_rows[r].frames);
        CU_ASSERT(s.c == 3 && s.v == 31 && s.m == 1 && s.masked == 0);
        for (int i = 0; i < 5; i++) {
            const float *got = s.data + (size_t)cmu_rows[r].keep[i] * row;
            double e = tu_rel_err(got, golden + (size_t)(r * 5 + i) * row, row);
            if (e > GOLDEN_TOL)
                fprintf(stderr, "\nfps %g frame %d: rel err %g\n", cmu_rows[r].fps,
                        cmu_rows[r].keep[i], e);
            CU_ASSERT(e <= GOLDEN_TOL);
        }
        skel_seq_free(&s);
    }
    free(golden);
}

static void test_cmu_info_names_joints_in_cmu31_order(void)
{
    skel_seq s = {0};
    bvh_info info = {0};
    cin_err err;
    CU_ASSERT_FATAL(bvh_read_ex(CMU, 30, &s, &info, &err) == 0);
    CU_ASSERT_EQUAL(info.joints, 31);
    CU_ASSERT_EQUAL(info.frames, 2752);
    CU_ASSERT_DOUBLE_EQUAL(info.frame_time, 0.0083333, 1e-12);
    for (int j = 0; j < 31 && j < info.joints; j++)
        CU_ASSERT_STRING_EQUAL(info.names[j], cmu_names[j]);
    /* Frame 0 puts the hips at the root's position channels. */
    check_pos(&s, 0, 0, 9.3722, 17.8693, -17.3198);
    bvh_info_free(&info);
    bvh_info_free(&info);
    CU_ASSERT_PTR_NULL(info.names);
    skel_seq_free(&s);
}

/* ---- known answers ---------------------------------------------------------------------- */

static void test_chain_turned_90_about_z_moves_children(void)
{
    skel_seq s = {0};
    bvh_info info = {0};
    cin_err err;
    CU_ASSERT_FATAL(read_text("chain.bvh", chain, 0, &s, &info, &err) == 0);
    CU_ASSERT(s.t == 2 && s.c == 3 && s.v == 3 && s.m == 1 && s.masked == 0);
    CU_ASSERT(info.joints == 3 && info.frames == 2);
    CU_ASSERT_DOUBLE_EQUAL(info.frame_time, 0.5, 0);
    CU_ASSERT_STRING_EQUAL(info.names[0], "a");
    CU_ASSERT_STRING_EQUAL(info.names[2], "c");
    check_pos(&s, 0, 0, 0, 0, 0);
    check_pos(&s, 0, 1, 1, 0, 0);
    check_pos(&s, 0, 2, 2, 0, 0);
    /* a at (1, 2, 3) turned 90 degrees about Z: b's offset (1, 0, 0) points along +y; b turns
     * another 90, so c's offset points along -x. */
    check_pos(&s, 1, 0, 1, 2, 3);
    check_pos(&s, 1, 1, 1, 3, 3);
    check_pos(&s, 1, 2, 0, 3, 3);
    bvh_info_free(&info);
    skel_seq_free(&s);
}

/* Rotations apply in the order listed, the first two angles 90 and the third 0: "Xrotation
 * Yrotation" is Rx * Ry, which takes (1, 0, 0) to (0, 1, 0); "Yrotation Xrotation" is Ry * Rx,
 * giving (0, 0, -1); Rz * Ry gives (0, 0, -1), Ry * Rz (0, 1, 0) and Rx * Rz (0, 0, 1). */
static void test_rotations_follow_the_listed_channel_order(void)
{
    static const struct {
        const char *channels;
        double x, y, z;
    } cases[] = {
        {"2 Xrotation Yrotation", 0, 1, 0},
        {"2 Yrotation Xrotation", 0, 0, -1},
        {"3 Zrotation Yrotation Xrotation", 0, 0, -1},
        {"3 Yrotation Zrotation Xrotation", 0, 1, 0},
        {"3 Xrotation Zrotation Yrotation", 0, 0, 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char text[1024];
        one_root(text, sizeof text, "0 0 0", cases[i].channels,
                 "Frames: 1\nFrame Time: 0.1\n90 90 0\n");
        /* Two-channel lines need two numbers; cut the third. */
        if (cases[i].channels[0] == '2')
            strcpy(strstr(text, "90 90 0"), "90 90\n");
        skel_seq s = {0};
        cin_err err;
        int rc = read_text("order.bvh", text, 0, &s, NULL, &err);
        if (rc)
            fprintf(stderr, "\n%s\n", err.msg);
        CU_ASSERT_FATAL(rc == 0);
        check_pos(&s, 0, 1, cases[i].x, cases[i].y, cases[i].z);
        skel_seq_free(&s);
    }
}

/* Position channels add to OFFSET; a root without them stays at its offset. */
static void test_root_without_position_channels_stays_at_its_offset(void)
{
    char text[1024];
    skel_seq s = {0};
    cin_err err;
    one_root(text, sizeof text, "5 0 0", "3 Zrotation Yrotation Xrotation",
             "Frames: 2\nFrame Time: 0.1\n0 0 0\n90 0 0\n");
    CU_ASSERT_FATAL(read_text("nopos.bvh", text, 0, &s, NULL, &err) == 0);
    check_pos(&s, 0, 0, 5, 0, 0);
    check_pos(&s, 0, 1, 6, 0, 0);
    check_pos(&s, 1, 0, 5, 0, 0);
    check_pos(&s, 1, 1, 5, 1, 0);
    skel_seq_free(&s);

    one_root(text, sizeof text, "1 1 1", "2 Yposition Xrotation",
             "Frames: 1\nFrame Time: 0.1\n2 -90\n");
    CU_ASSERT_FATAL(read_text("ypos.bvh", text, 0, &s, NULL, &err) == 0);
    check_pos(&s, 0, 0, 1, 3, 1);
    check_pos(&s, 0, 1, 2, 3, 1);
    skel_seq_free(&s);
}

static void test_several_roots_and_crlf_and_bom_are_read(void)
{
    const char *text =
        "\xef\xbb\xbfHIERARCHY\r\nROOT a\r\n{\r\n\tOFFSET 1 0 0\r\n\tCHANNELS 1 Xposition\r\n"
        "}\r\nROOT b\r\n{\r\n\tOFFSET 0 2 0\r\n\tCHANNELS 1 Yposition\r\n}\r\nMOTION\r\n"
        "Frames: 1\r\nFrame Time: 0.1\r\n\t3  4 \r\n\r\n";
    skel_seq s = {0};
    bvh_info info = {0};
    cin_err err;
    int rc = read_text("crlf.bvh", text, 0, &s, &info, &err);
    if (rc)
        fprintf(stderr, "\n%s\n", err.msg);
    CU_ASSERT_FATAL(rc == 0);
    CU_ASSERT_EQUAL(s.v, 2);
    CU_ASSERT_STRING_EQUAL(info.names[1], "b");
    check_pos(&s, 0, 0, 4, 0, 0);
    check_pos(&s, 0, 1, 0, 6, 0);
    bvh_info_free(&info);
    skel_seq_free(&s);
}

/* ---- resampling ------------------------------------------------------------------------- */

/* Root x = 0, 1, 3 at 0.1 s: at 15 fps (4 frames, s = 0, 2/3, 4/3, 2) the positions are
 * interpolated linearly between the source frames around each output time. */
static void test_resampling_interpolates_positions_linearly(void)
{
    char text[1024];
    one_root(text, sizeof text, "0 0 0", "1 Xposition",
             "Frames: 3\nFrame Time: 0.1\n0\n1\n3\n");
    static const struct {
        double fps;
        int t;
        double x[4];
    } cases[] = {
        {15, 4, {0, 2.0 / 3, 1 + 2.0 / 3, 3}},
        {10, 3, {0, 1, 3}},
        {5, 2, {0, 3}},
        {4, 1, {0}},
        {0, 3, {0, 1, 3}},
        {-1, 3, {0, 1, 3}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        skel_seq s = {0};
        cin_err err;
        CU_ASSERT_FATAL(read_text("resample.bvh", text, cases[i].fps, &s, NULL, &err) == 0);
        CU_ASSERT_EQUAL(s.t, cases[i].t);
        for (int k = 0; k < s.t && k < 4; k++) {
            check_pos(&s, k, 0, cases[i].x[k], 0, 0);
            check_pos(&s, k, 1, cases[i].x[k] + 1, 0, 0);
        }
        skel_seq_free(&s);
    }
}

/* 30 frames 0.01 s apart at 100 fps: 29 * 0.01 * 100 rounds to 28.999999999999996, and the
 * slack keeps the last frame. */
static void test_resampled_frame_count_absorbs_rounding(void)
{
    char text[4096], motion[2048];
    size_t k = (size_t)snprintf(motion, sizeof motion, "Frames: 30\nFrame Time: 0.01\n");
    for (int f = 0; f < 30; f++)
        k += (size_t)snprintf(motion + k, sizeof motion - k, "%d\n", f);
    one_root(text, sizeof text, "0 0 0", "1 Xposition", motion);
    skel_seq s = {0};
    cin_err err;
    CU_ASSERT_FATAL(read_text("slack.bvh", text, 100, &s, NULL, &err) == 0);
    CU_ASSERT_EQUAL(s.t, 30);
    check_pos(&s, 29, 0, 29, 0, 0);
    skel_seq_free(&s);
    CU_ASSERT_FATAL(read_text("slack.bvh", text, 50, &s, NULL, &err) == 0);
    CU_ASSERT_EQUAL(s.t, 15);
    check_pos(&s, 14, 0, 28, 0, 0);
    skel_seq_free(&s);
}

/* ---- non-finite values ------------------------------------------------------------------ */

/* A non-finite value masks its joint and the joints below it, in that frame only. */
static void test_nonfinite_values_mask_the_joint_and_its_descendants(void)
{
    static const char *tokens[] = {"nan", "-nan", "inf", "-Infinity", "1e999", "NaN"};
    for (size_t i = 0; i < sizeof tokens / sizeof tokens[0]; i++) {
        char text[1024];
        strcpy(text, chain);
        char *motion = strstr(text, "0 0 0 0 0 0 0\n");
        snprintf(motion, 200, "0 0 0 0 0 0 %s\n%s 0 0 0 0 0 0\n1 2 3 90 0 0 90\n", tokens[i],
                 tokens[i]);
        strstr(text, "Frames: 2")[8] = '3';
        skel_seq s = {0};
        cin_err err;
        CU_ASSERT_FATAL(read_text("nonfinite.bvh", text, 0, &s, NULL, &err) == 0);
        CU_ASSERT_EQUAL(s.t, 3);
        CU_ASSERT_EQUAL(s.masked, 2 + 3);
        check_pos(&s, 0, 0, 0, 0, 0);
        check_pos(&s, 0, 1, 0, 0, 0);
        check_pos(&s, 0, 2, 0, 0, 0);
        check_pos(&s, 2, 2, 0, 3, 3);
        for (size_t v = 0; v < (size_t)s.t * 3 * 3; v++)
            CU_ASSERT(isfinite(s.data[v]));
        skel_seq_free(&s);
    }
}

/* A masked source frame masks the output frames that take it with a non-zero weight. */
static void test_resampling_masks_frames_next_to_a_masked_one(void)
{
    char text[1024];
    one_root(text, sizeof text, "0 0 0", "1 Xposition",
             "Frames: 3\nFrame Time: 0.1\n0\nnan\n3\n");
    skel_seq s = {0};
    cin_err err;
    CU_ASSERT_FATAL(read_text("maskres.bvh", text, 15, &s, NULL, &err) == 0);
    CU_ASSERT_EQUAL(s.t, 4);
    CU_ASSERT_EQUAL(s.masked, 2 * 2);
    check_pos(&s, 0, 1, 1, 0, 0);
    check_pos(&s, 1, 1, 0, 0, 0);
    check_pos(&s, 2, 1, 0, 0, 0);
    check_pos(&s, 3, 1, 4, 0, 0);
    skel_seq_free(&s);
    /* At 10 fps every output frame is a source frame: only frame 1 is masked. */
    CU_ASSERT_FATAL(read_text("maskres.bvh", text, 10, &s, NULL, &err) == 0);
    CU_ASSERT_EQUAL(s.masked, 2);
    check_pos(&s, 2, 0, 3, 0, 0);
    skel_seq_free(&s);
}

/* A position too large for a float is masked too. */
static void test_position_beyond_float_range_is_masked(void)
{
    char text[1024];
    one_root(text, sizeof text, "0 0 0", "1 Xposition",
             "Frames: 2\nFrame Time: 0.1\n1e300\n2\n");
    skel_seq s = {0};
    cin_err err;
    CU_ASSERT_FATAL(read_text("huge.bvh", text, 0, &s, NULL, &err) == 0);
    CU_ASSERT_EQUAL(s.masked, 2);
    check_pos(&s, 0, 1, 0, 0, 0);
    check_pos(&s, 1, 1, 3, 0, 0);
    skel_seq_free(&s);
}

/* ---- malformed input -------------------------------------------------------------------- */

static void test_broken_hierarchy_is_refused_with_its_line(void)
{
    char text[2048];
    check_refused("empty.bvh", "", CIN_E_FORMAT, 1, "expected 'HIERARCHY'");
    check_refused("noroot.bvh", "HIERARCHY\nMOTION\n", CIN_E_FORMAT, 2,
                  "expected ROOT, found 'MOTION'");
    strcpy(text, chain);
    memmove(strstr(text, "}\nMOTION"), "\nMOTION\n", sizeof "\nMOTION\n");
    strcat(text, "Frames: 2\nFrame Time: 0.5\n0 0 0 0 0 0 0\n0 0 0 0 0 0 0\n");
    check_refused("unclosed.bvh", text, CIN_E_FORMAT, 21,
                  "expected JOINT, End Site or '}' closing joint 'a' of line 2, found 'MOTION'");
    strcpy(text, chain);
    memmove(strstr(text, "MOTION"), "}\nMOTION", sizeof "}\nMOTION");
    check_refused("extra.bvh", text, CIN_E_FORMAT, 21, "expected ROOT or MOTION, found '}'");
    one_root(text, sizeof text, "0 0", "1 Xposition", "Frames: 1\nFrame Time: 1\n0\n");
    check_refused("offset.bvh", text, CIN_E_FORMAT, 5,
                  "expected a finite number for OFFSET z, found 'CHANNELS'");
    one_root(text, sizeof text, "0 nan 0", "1 Xposition", "Frames: 1\nFrame Time: 1\n0\n");
    check_refused("nanoffset.bvh", text, CIN_E_FORMAT, 4, "OFFSET y, found 'nan'");
    check_refused("noname.bvh", "HIERARCHY\nROOT\n{\n", CIN_E_FORMAT, 3,
                  "expected a joint name, found '{'");
    check_refused("nul.bvh", "HIERARCHY\nROOT a\x01z\n{\n", CIN_E_FORMAT, 2,
                  "expected a joint name, found 'a\\x01z'");
    strcpy(text, chain);
    memcpy(strstr(text, "OFFSET 0 0 1"), "CHANNELS 0 ", 11);
    check_refused("endsite.bvh", text, CIN_E_FORMAT, 16, "expected 'OFFSET' in End Site");
    strcpy(text, chain);
    memcpy(strstr(text, "End Site"), "End Sits", 8);
    check_refused("endsits.bvh", text, CIN_E_FORMAT, 14, "expected 'Site' after End");
}

static void test_bad_channels_are_refused(void)
{
    static const struct {
        const char *channels, *want;
    } cases[] = {
        {"7 Xposition Yposition Zposition Xrotation Yrotation Zrotation Xrotation",
         "expected a channel count 0..6 after CHANNELS, found '7'"},
        {"-1", "expected a channel count 0..6 after CHANNELS, found '-1'"},
        {"x Xposition", "expected a channel count 0..6 after CHANNELS, found 'x'"},
        {"12 Xposition", "found '12'"},
        {"1 Wrotation", "expected a channel name (Xposition, Yposition, Zposition, "
                        "Xrotation, Yrotation or Zrotation), found 'Wrotation'"},
        {"2 Xrotation xrotation", "found 'xrotation'"},
        {"2 Zrotation Zrotation", "expected each channel at most once, found Zrotation twice"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char text[1024];
        one_root(text, sizeof text, "0 0 0", cases[i].channels,
                 "Frames: 1\nFrame Time: 1\n0\n");
        check_refused("channels.bvh", text, CIN_E_FORMAT, 5, cases[i].want);
    }
}

/* Motion sections of a root with one channel (Xposition); "Frames:" is on line 17. */
static void test_bad_motion_sections_are_refused_with_their_line(void)
{
    static const struct {
        const char *motion;
        int line;
        const char *want;
    } cases[] = {
        {"", 17, "expected 'Frames:' after MOTION, found the end of the file"},
        {"Frames: -1\nFrame Time: 1\n0\n", 17,
         "expected a frame count 1..2147483647 after Frames:, found '-1'"},
        {"Frames: abc\nFrame Time: 1\n0\n", 17, "after Frames:, found 'abc'"},
        {"Frames: 0\nFrame Time: 1\n", 17, "after Frames:, found '0'"},
        {"Frames: 99999999999999999999\nFrame Time: 1\n0\n", 17,
         "after Frames:, found '99999999999999999999'"},
        {"Frames: 2147483647\nFrame Time: 1\n0\n", 17,
         "expected at most 1 frames of 1 numbers in the 2 bytes after Frame Time, "
         "found Frames: 2147483647"},
        {"Frames: 3\nFrame Time: 1\n0\n1\n", 17, "expected at most 2 frames"},
        {"Frames: 2\nFrame Time: 1\n0 \n", 20,
         "expected frame 2 of 2 (Frames:), found the end of the file"},
        {"Frames: 2\nFrame Time: 1\n0\n\n1\n", 20,
         "expected 1 numbers on the line of frame 2, found 0"},
        {"Frames: 1\nFrametime: 1\n0\n", 18, "expected 'Frame' after the frame count"},
        {"Frames: 1\nFrame Time: 0\n0\n", 18, "expected a frame time in seconds > 0, found '0'"},
        {"Frames: 1\nFrame Time: -0.1\n0\n", 18, "found '-0.1'"},
        {"Frames: 1\nFrame Time: nan\n0\n", 18, "found 'nan'"},
        {"Frames: 1\nFrame Time: inf\n0\n", 18, "found 'inf'"},
        {"Frames: 1\nFrame Time: 1e999\n0\n", 18, "found '1e999'"},
        {"Frames: 1\nFrame Time: abc\n0\n", 18, "found 'abc'"},
        {"Frames: 1\nFrame Time:\n", 19, "found the end of the file"},
        {"Frames: 1\nFrame Time: 0.1 x\n0\n", 18,
         "expected the end of the line after the frame time, found 'x'"},
        {"Frames: 1\nFrame Time: 1\n0 1\n", 19,
         "expected 1 numbers on the line of frame 1, found more: '1'"},
        {"Frames: 1\nFrame Time: 1\n1.0x\n", 19,
         "expected a number (1 of 1 on the line of frame 1), found '1.0x'"},
        {"Frames: 1\nFrame Time: 1\n0x10\n", 19, "found '0x10'"},
        {"Frames: 1\nFrame Time: 1\n--1\n", 19, "found '--1'"},
        {"Frames: 1\nFrame Time: 1\n1e\n", 19, "found '1e'"},
        {"Frames: 1\nFrame Time: 1\n.\n", 19, "found '.'"},
        {"Frames: 1\nFrame Time: 1\n1,5\n", 19, "found '1,5'"},
        {"Frames: 1\nFrame Time: 1\nnanx\n", 19, "found 'nanx'"},
        {"Frames: 1\nFrame Time: 1\n0\nfoo\n", 20,
         "expected the end of the file after 1 frames (Frames:), found 'foo'"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char text[1024];
        one_root(text, sizeof text, "0 0 0", "1 Xposition", cases[i].motion);
        check_refused("motion.bvh", text, CIN_E_FORMAT, cases[i].line, cases[i].want);
    }
    char text[1024];
    one_root(text, sizeof text, "0 0 0", "2 Xposition Yposition",
             "Frames: 1\nFrame Time: 1\n0    \n");
    check_refused("few.bvh", text, CIN_E_FORMAT, 19,
                  "expected 2 numbers on the line of frame 1, found 1");
    one_root(text, sizeof text, "0 0 0", "0", "Frames: 1\nFrame Time: 1\n\n");
    check_refused("nochannels.bvh", text, CIN_E_UNSUPPORTED, 16, "no channels");
}

/* A root with `joints - 1` children one below the other (nested) or side by side. */
static char *many_joints(int joints, int nested, int end_site)
{
    size_t cap = (size_t)joints * 64 + 256, k = 0;
    char *t = malloc(cap);
    CU_ASSERT_FATAL(t != NULL);
    k += (size_t)snprintf(t + k, cap - k, "HIERARCHY\nROOT j0\n{\nOFFSET 0 0 0\n"
                          "CHANNELS 1 Xposition\n");
    for (int j = 1; j < joints; j++)
        k += (size_t)snprintf(t + k, cap - k, "JOINT j%d\n{\nOFFSET 0 0 1\n%s", j,
                              nested ? "" : "}\n");
    if (end_site)
        k += (size_t)snprintf(t + k, cap - k, "End Site\n{\nOFFSET 0 0 1\n}\n");
    for (int j = 0; j < (nested ? joints : 1); j++)
        k += (size_t)snprintf(t + k, cap - k, "}\n");
    snprintf(t + k, cap - k, "MOTION\nFrames: 1\nFrame Time: 1\n2\n");
    return t;
}

static void test_nesting_and_joint_count_are_bounded(void)
{
    static const struct {
        int joints, nested, end_site, rc;
        const char *want;
    } cases[] = {
        {BVH_MAX_DEPTH, 1, 0, 0, NULL},
        {BVH_MAX_DEPTH - 1, 1, 1, 0, NULL},
        {BVH_MAX_DEPTH, 1, 1, CIN_E_FORMAT, "expected blocks nested at most 64 deep"},
        {BVH_MAX_DEPTH + 1, 1, 0, CIN_E_FORMAT, "expected blocks nested at most 64 deep"},
        {100000, 1, 0, CIN_E_FORMAT, "expected blocks nested at most 64 deep"},
        {BVH_MAX_JOINTS, 0, 1, 0, NULL},
        {BVH_MAX_JOINTS + 1, 0, 0, CIN_E_FORMAT, "expected at most 1024 joints, found more"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *text = many_joints(cases[i].joints, cases[i].nested, cases[i].end_site);
        skel_seq s = {0};
        cin_err err = {0};
        int rc = read_text("bounds.bvh", text, 0, &s, NULL, &err);
        CU_ASSERT_EQUAL(rc, cases[i].rc);
        if (cases[i].want)
            CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, cases[i].want));
        if (!rc) {
            CU_ASSERT_EQUAL(s.v, cases[i].joints);
            /* Nested: joint j sits j along z, moved 2 along x by the root. */
            check_pos(&s, 0, s.v - 1, 2, 0, cases[i].nested ? s.v - 1 : 1);
        }
        skel_seq_free(&s);
        free(text);
    }
}

/* Every prefix of a valid file is read or refused cleanly, never past its end. */
static void test_every_prefix_of_a_valid_file_fails_cleanly_or_reads(void)
{
    size_t n = strlen(chain);
    int read = 0;
    for (size_t len = 0; len <= n; len++) {
        char *copy = malloc(len ? len : 1);
        CU_ASSERT_FATAL(copy != NULL);
        memcpy(copy, chain, len);
        skel_seq s = {0};
        bvh_info info = {0};
        cin_err err = {0};
        int rc = read_bytes("prefix.bvh", copy, len, 0, &s, &info, &err);
        CU_ASSERT(rc == 0 || rc == CIN_E_FORMAT);
        if (rc == 0) {
            read++;
            CU_ASSERT(s.t == 2 && s.v == 3 && info.joints == 3);
        } else {
            CU_ASSERT(strstr(err.msg, ": expected ") != NULL);
            CU_ASSERT(s.data == NULL && info.names == NULL);
        }
        skel_seq_free(&s);
        bvh_info_free(&info);
        free(copy);
    }
    /* The whole file, without its last '\n', and cut to "... 0 0 9". */
    CU_ASSERT_EQUAL(read, 3);
}

static void test_cmu_prefixes_fail_cleanly(void)
{
    size_t n;
    unsigned char *cmu = tu_read_file(CMU, &n);
    CU_ASSERT_FATAL(cmu != NULL);
    for (int i = 1; i < 24; i++) {
        size_t len = n / 24 * (size_t)i + (size_t)i * 7;
        skel_seq s = {0};
        cin_err err = {0};
        int rc = read_bytes("cmu_prefix.bvh", cmu, len, 0, &s, NULL, &err);
        CU_ASSERT_EQUAL(rc, CIN_E_FORMAT);
        CU_ASSERT_PTR_NULL(s.data);
    }
    free(cmu);
}

/* A small linear congruential generator: the same bytes on every run. */
static uint32_t lcg(uint32_t *state)
{
    *state = *state * 1664525u + 1013904223u;
    return *state >> 8;
}

static void test_random_bytes_and_mutations_fail_cleanly(void)
{
    uint32_t st = 12345;
    char buf[1024];
    size_t n = strlen(chain);
    for (int round = 0; round < 600; round++) {
        size_t len;
        if (round < 200) {
            len = lcg(&st) % sizeof buf;
            for (size_t i = 0; i < len; i++)
                buf[i] = (char)lcg(&st);
        } else {
            len = n;
            memcpy(buf, chain, n);
            for (int m = 1 + (int)(lcg(&st) % 3); m > 0; m--)
                buf[lcg(&st) % n] = round & 1 ? (char)lcg(&st) : " \n{}0.-e"[lcg(&st) % 8];
        }
        skel_seq s = {0};
        bvh_info info = {0};
        cin_err err = {0};
        int rc = read_bytes("random.bvh", buf, len, 15, &s, &info, &err);
        CU_ASSERT(rc == 0 || rc == CIN_E_FORMAT || rc == CIN_E_UNSUPPORTED);
        CU_ASSERT(rc != 0 || (s.data != NULL && s.v == info.joints));
        skel_seq_free(&s);
        bvh_info_free(&info);
    }
}

static void test_nul_byte_in_a_name_is_refused(void)
{
    static const char text[] = "HIERARCHY\nROOT a\0b\n{\n";
    skel_seq s = {0};
    cin_err err = {0};
    CU_ASSERT_EQUAL(read_bytes("nul.bvh", text, sizeof text - 1, 0, &s, NULL, &err),
                    CIN_E_FORMAT);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, ":2: expected a joint name, found 'a\\x00b'"));
}

/* ---- arguments and files ---------------------------------------------------------------- */

static void test_bad_arguments_and_files_are_reported(void)
{
    skel_seq s = {0};
    bvh_info info = {0};
    cin_err err = {0};
    CU_ASSERT_EQUAL(bvh_read_ex(NULL, 0, &s, &info, &err), CIN_E_INVAL);
    CU_ASSERT_EQUAL(bvh_read_ex(CMU, 0, NULL, &info, &err), CIN_E_INVAL);
    CU_ASSERT_EQUAL(bvh_read_ex(CMU, NAN, &s, &info, &err), CIN_E_INVAL);
    CU_ASSERT_EQUAL(bvh_read_ex(CMU, INFINITY, &s, &info, &err), CIN_E_INVAL);
    CU_ASSERT_EQUAL(bvh_read_ex("media/no-such-file.bvh", 0, &s, &info, &err), CIN_E_IO);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "media/no-such-file.bvh: cannot open"));
    CU_ASSERT_EQUAL(bvh_read_ex("media", 0, &s, &info, &err), CIN_E_IO);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "not a regular file"));
    /* Resampling beyond the output bound is refused before anything is allocated for it. */
    CU_ASSERT_EQUAL(read_text("fast.bvh", chain, 1e12, &s, &info, &err), CIN_E_UNSUPPORTED);
    CU_ASSERT_EQUAL(read_text("fast.bvh", chain, 2e7, &s, &info, &err), CIN_E_UNSUPPORTED);
    CU_ASSERT(s.data == NULL && info.names == NULL);
    bvh_info zero = {0};
    bvh_info_free(&zero);
    bvh_info_free(NULL);
}

/* ---- registration ----------------------------------------------------------------------- */

typedef struct named_test {
    const char *name;
    CU_TestFunc fn;
} named_test;

#define TEST(name) {#name, test_##name}

int test_bvh_register(void)
{
    static const named_test tests[] = {
        TEST(cmu_capture_matches_numpy_reference),
        TEST(cmu_info_names_joints_in_cmu31_order),
        TEST(chain_turned_90_about_z_moves_children),
        TEST(rotations_follow_the_listed_channel_order),
        TEST(root_without_position_channels_stays_at_its_offset),
        TEST(several_roots_and_crlf_and_bom_are_read),
        TEST(resampling_interpolates_positions_linearly),
        TEST(resampled_frame_count_absorbs_rounding),
        TEST(nonfinite_values_mask_the_joint_and_its_descendants),
        TEST(resampling_masks_frames_next_to_a_masked_one),
        TEST(position_beyond_float_range_is_masked),
        TEST(broken_hierarchy_is_refused_with_its_line),
        TEST(bad_channels_are_refused),
        TEST(bad_motion_sections_are_refused_with_their_line),
        TEST(nesting_and_joint_count_are_bounded),
        TEST(every_prefix_of_a_valid_file_fails_cleanly_or_reads),
        TEST(cmu_prefixes_fail_cleanly),
        TEST(random_bytes_and_mutations_fail_cleanly),
        TEST(nul_byte_in_a_name_is_refused),
        TEST(bad_arguments_and_files_are_reported),
    };
    CU_pSuite s = CU_add_suite("bvh", NULL, NULL);
    if (!s)
        return -1;
    for (size_t i = 0; i < sizeof tests / sizeof tests[0]; i++)
        if (!CU_add_test(s, tests[i].name, tests[i].fn))
            return -1;
    return 0;
}
