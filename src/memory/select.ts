/** Choosing a page tracker: probed automatically, overridable, reported by `ferry nodes`. */
import { FerryError } from "../errors.js";
import { KernelTracker, kernelTrackerAvailability } from "./kernel.js";
import { ShadowTracker, type PageTracker } from "./tracker.js";

/** What a node may be told to use. */
export type TrackerChoice = "auto" | "userfaultfd" | "portable";

/** The backend a choice resolves to here, and why. */
export function resolveTracker(choice: TrackerChoice): { name: "userfaultfd" | "portable"; note: string } {
  const kernel = kernelTrackerAvailability();
  if (choice === "portable") return { name: "portable", note: "chosen" };
  if (choice === "userfaultfd") {
    if (!kernel.available) throw new FerryError("ERR_TRACKER_UNAVAILABLE", `the userfaultfd page tracker cannot be used here: ${kernel.reason}`);
    return { name: "userfaultfd", note: "chosen" };
  }
  return kernel.available ? { name: "userfaultfd", note: "probed" } : { name: "portable", note: `userfaultfd unavailable: ${kernel.reason}` };
}

/** A fresh tracker of the named backend. */
export function createTracker(name: "userfaultfd" | "portable"): PageTracker {
  return name === "userfaultfd" ? new KernelTracker() : new ShadowTracker();
}
