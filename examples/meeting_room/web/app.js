// The meeting-room page: one participant's live MeetingSession, and their attendance.
//   /?user=joshua            (optional: &meeting=meeting-1)
// It subscribes to the participant's view over onto's websocket sink, re-renders on
// every update, and runs the set_attendance action through the websocket source.
(function () {
  "use strict";

  const params = new URLSearchParams(window.location.search);
  const user = params.get("user");
  const meeting = params.get("meeting") || "meeting-1";
  const VIEW = "meeting_session";
  const key = `${meeting}/${user}`;
  const $ = (id) => document.getElementById(id);

  let current = null; // the latest MeetingSession data
  let version = -1; // its version: older deliveries are ignored

  function showError(message) {
    $("error").textContent = message || "";
  }

  function attending() {
    return Boolean(current && current.attending.some((a) => a.userId === user));
  }

  function render() {
    const me = current.attending.find((a) => a.userId === user);
    $("participant").textContent = me
      ? `You are ${me.name} (${me.organization}).`
      : `You are ${user}, not attending.`;
    $("meeting-address").textContent = current.address;
    $("meeting-status").textContent = current.status;
    $("attendee-count").textContent = String(current.attending.length);
    $("hearing-aid-count").textContent = String(current.numHearingAidRequested);
    const list = $("attendees");
    list.replaceChildren(
      ...current.attending.map((attendee) => {
        const item = document.createElement("li");
        item.dataset.testid = "attendee";
        item.dataset.userId = attendee.userId;
        const name = document.createElement("span");
        name.className = "name";
        name.textContent = attendee.name;
        const organization = document.createElement("span");
        organization.className = "organization";
        organization.textContent = ` · ${attendee.organization}`;
        item.append(name, organization);
        if (attendee.hearingAidRequested) {
          const badge = document.createElement("span");
          badge.className = "badge";
          badge.textContent = "hearing aid";
          item.append(badge);
        }
        return item;
      })
    );
    const button = $("toggle-attendance");
    button.textContent = attending() ? "Leave the meeting" : "Join the meeting";
    button.setAttribute("aria-pressed", String(attending()));
    button.disabled = false;
    $("meeting").setAttribute("aria-busy", "false");
    $("meeting").dataset.version = String(version);
  }

  if (!user) {
    $("connection-status").textContent = "Not connected";
    showError("Pick a participant: add ?user=joshua (or tijuana, thomasina) to the address.");
    return;
  }

  const socket = new window.OntoSocket();

  socket.on("connect", async () => {
    $("connection-status").textContent = "Live";
    showError("");
    // A new subscription's first view is current, whatever version the last server
    // reached (a restarted one may number from 0 again).
    version = -1;
    try {
      const answer = await socket.request("subscribe", { view: VIEW, key });
      if (!answer.ok) showError(`Cannot follow ${key}: ${answer.error}`);
    } catch (error) {
      showError(error.message);
    }
  });
  socket.on("disconnect", () => {
    $("connection-status").textContent = "Reconnecting…";
    $("toggle-attendance").disabled = true;
  });
  socket.on("connect_error", (error) => {
    $("connection-status").textContent = "Not connected";
    showError(`The server refused the connection: ${error.message}`);
  });
  socket.on("view", (envelope) => {
    if (envelope.view !== VIEW || envelope.key !== key || envelope.version < version) return;
    version = envelope.version;
    if (envelope.removed) {
      current = null;
      showError(`${key} no longer exists.`);
      $("toggle-attendance").disabled = true;
      return;
    }
    current = envelope.data;
    render();
  });

  $("toggle-attendance").addEventListener("click", async () => {
    const button = $("toggle-attendance");
    button.disabled = true;
    showError("");
    try {
      const answer = await socket.request("action", {
        view: VIEW,
        key,
        action: "set_attendance",
        arguments: { attending: !attending() },
      });
      if (answer.status !== 200) showError(answer.body.error);
    } catch (error) {
      showError(error.message);
    } finally {
      // The new view arrives through the subscription; the button waits for nothing else.
      button.disabled = current === null;
    }
  });
})();
