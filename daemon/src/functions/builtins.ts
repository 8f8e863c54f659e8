/** The reference's built-in bot functions, with its output formats. */
export interface Builtin {
  description: string;
  run: () => string;
}

const DAYS = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"];
const MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October", "November", "December"];

export const BUILTINS: Record<string, Builtin> = {
  DATE: {
    description: "Returns the current date.",
    // e.g. "Monday, November 23 2026"
    run: (now = new Date()) => `${DAYS[now.getDay()]}, ${MONTHS[now.getMonth()]} ${now.getDate()} ${now.getFullYear()}`,
  },
  TIME: {
    description: "Returns the current time.",
    // e.g. "10:17 PM"
    run: (now = new Date()) => `${now.getHours() % 12 || 12}:${String(now.getMinutes()).padStart(2, "0")} ${now.getHours() < 12 ? "AM" : "PM"}`,
  },
};
