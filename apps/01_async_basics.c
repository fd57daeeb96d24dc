/* Tutorial 1, async basics: a first coroutine, sequential versus concurrent
 * work, and chained awaits. A C port of apps/python/01_async_basics.py that
 * prints the same lines; SP_TIME_SCALE speeds it up (see tutorial.h). */
#include "tutorial.h"

/* ---- 1. A first coroutine ------------------------------------------------
 * A Python coroutine is, in Spindle, a plain C function that may call
 * suspending functions. It must run inside a task: amain() below is the main
 * task that sp_run() starts, as asyncio.run(main()) does. */

static int hello(void) {
    say("hello ...");
    /* await asyncio.sleep(1): suspends this task only; the loop runs others. */
    int rc = sp_sleep(scaled(1.0));
    if (rc != 0)
        return rc; /* -ECANCELED: every suspending call may report a cancel */
    say("... world");
    return 0;
}

/* ---- 2. Sequential versus concurrent --------------------------------------
 * One function serves both ways: called directly it is `await job(...)`,
 * running inside the caller's task; given to sp_spawn it is
 * `asyncio.create_task(job(...))`, a task of its own. A task body has the
 * signature int fn(void *arg, void **result). */

typedef struct job {
    const char *name;
    double seconds;
    char done[48]; /* the result text; the job struct owns it */
} job;

static int job_run(void *arg, void **result) {
    job *j = arg;
    say("%s: start", j->name);
    int rc = sp_sleep(scaled(j->seconds));
    if (rc != 0)
        return rc;
    snprintf(j->done, sizeof(j->done), "%s: done", j->name);
    *result = j->done; /* borrowed from *j, which outlives the task */
    return 0;
}

enum { NJOBS = 3 };

static void jobs_init(job jobs[NJOBS]) {
    static const char *const names[NJOBS] = {"brew coffee", "toast bread", "fry eggs"};
    for (int i = 0; i < NJOBS; i++)
        jobs[i] = (job){.name = names[i], .seconds = 2.0};
}

static int sequential(void) {
    job jobs[NJOBS];
    jobs_init(jobs);
    double start = sp_time();
    for (int i = 0; i < NJOBS; i++) {
        void *done;
        /* `await job(...)`: each call returns before the next one starts. */
        int rc = job_run(&jobs[i], &done);
        if (rc != 0)
            return rc;
        say("%s", (const char *)done);
    }
    say("sequential: finished in %.1f s", elapsed(start));
    return 0;
}

static int concurrent(void) {
    job jobs[NJOBS];
    jobs_init(jobs);
    sp_task *tasks[NJOBS] = {NULL};
    double start = sp_time();
    for (int i = 0; i < NJOBS; i++) {
        /* create_task: scheduled to start at the loop's next iteration. */
        int rc = sp_spawn(&tasks[i], jobs[i].name, job_run, &jobs[i]);
        if (rc != 0) {
            cancel_all(tasks, NJOBS);
            return report(rc, "sp_spawn");
        }
    }
    for (int i = 0; i < NJOBS; i++) {
        void *done;
        /* `await task`: the three sleep at the same time, so this waits about
         * 2 s for the first and nothing for the other two. */
        int rc = sp_task_await(tasks[i], &done);
        if (rc != 0) {
            cancel_all(tasks, NJOBS);
            return rc;
        }
        say("%s", (const char *)done);
        sp_task_release(tasks[i]); /* every handle sp_spawn gave is released */
        tasks[i] = NULL;
    }
    say("concurrent: finished in %.1f s", elapsed(start));
    return 0;
}

/* ---- 3. Chaining awaits ----------------------------------------------------
 * render_page awaits load_profile, which awaits lookup_user_id; each result
 * comes back through an out-parameter, and so does each error. */

static int lookup_user_id(const char *login, int *user_id) {
    say("  lookup_user_id('%s')", login);
    int rc = sp_sleep(scaled(0.5));
    if (rc != 0)
        return rc;
    *user_id = 42;
    return 0;
}

static int load_profile(const char *login, char *profile, size_t size) {
    say("  load_profile('%s')", login);
    int user_id;
    int rc = lookup_user_id(login, &user_id);
    if (rc == 0)
        rc = sp_sleep(scaled(0.5));
    if (rc != 0)
        return rc;
    snprintf(profile, size, "user #%d (%s)", user_id, login);
    return 0;
}

static int render_page(const char *login, char *page, size_t size) {
    say("  render_page('%s')", login);
    char profile[64];
    int rc = load_profile(login, profile, sizeof(profile));
    if (rc != 0)
        return rc;
    snprintf(page, size, "<h1>%s</h1>", profile);
    return 0;
}

static int chaining(void) {
    double start = sp_time();
    char page[96];
    int rc = render_page("ada", page, sizeof(page));
    if (rc != 0)
        return rc;
    say("page: %s", page);
    say("chain: finished in %.1f s", elapsed(start));
    return 0;
}

static int amain(void *arg, void **result) {
    (void)arg, (void)result;
    int rc;
    say("== 1. a first coroutine ==");
    if ((rc = hello()) != 0)
        return rc;
    say("== 2. sequential versus concurrent ==");
    if ((rc = sequential()) != 0 || (rc = concurrent()) != 0)
        return rc;
    say("== 3. chaining awaits ==");
    return chaining();
}

int main(void) {
    return tut_main("01_async_basics", amain);
}
