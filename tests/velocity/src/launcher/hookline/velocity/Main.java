package hookline.velocity;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.File;
import java.net.URL;
import java.net.URLClassLoader;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.function.Function;

/**
 * Renders API Gateway mapping templates with the real Apache Velocity engine.
 *
 * <p>Reads one request (a JSON object) or several (a JSON array) on stdin; see Renderer for
 * the fields. One request: writes {"output", "status_override", "engine"} on stdout, or the
 * error on stderr and exits 1. An array: writes an array of the same objects, an item that
 * failed being {"error": "..."}, and exits 0.
 *
 * <p>Each request names its engine ("1.7" or "2"). Velocity 1.7 and 2.x share package and
 * class names, so each gets its own class loader holding its jars and Renderer compiled
 * against them (system property hookline.velocity.classpath.ENGINE); this class sees neither.
 */
public final class Main {
  private static final ObjectMapper JSON = new ObjectMapper();
  private static final Map<String, Function<Map<String, Object>, Map<String, Object>>> RENDERERS =
      new HashMap<>();

  private Main() {}

  public static void main(String[] args) throws Exception {
    JsonNode input;
    try {
      input = JSON.readTree(System.in);
    } catch (Exception e) {
      System.err.println("velocity: stdin is not JSON: " + describe(e));
      System.exit(1);
      return;
    }
    if (input == null || !(input.isObject() || input.isArray())) {
      System.err.println("velocity: stdin must hold a JSON object (one request) or array");
      System.exit(1);
      return;
    }
    if (input.isObject()) {
      try {
        System.out.println(JSON.writeValueAsString(render(input)));
      } catch (Exception e) {
        System.err.println("velocity: " + describe(e));
        System.exit(1);
      }
      return;
    }
    ArrayNode results = JSON.createArrayNode();
    for (JsonNode request : input) {
      try {
        results.add(JSON.valueToTree(render(request)));
      } catch (Exception e) {
        ObjectNode error = results.addObject();
        error.put("error", describe(e));
      }
    }
    System.out.println(JSON.writeValueAsString(results));
  }

  @SuppressWarnings("unchecked")
  private static Map<String, Object> render(JsonNode request) throws Exception {
    if (!request.isObject()) {
      throw new IllegalArgumentException("a request must be a JSON object");
    }
    JsonNode engine = request.get("engine");
    if (engine == null || !engine.isTextual()) {
      throw new IllegalArgumentException("\"engine\" must be \"1.7\" or \"2\"");
    }
    Function<Map<String, Object>, Map<String, Object>> renderer = renderer(engine.asText());
    return renderer.apply(JSON.convertValue(request, Map.class));
  }

  @SuppressWarnings("unchecked")
  private static Function<Map<String, Object>, Map<String, Object>> renderer(String engine)
      throws Exception {
    Function<Map<String, Object>, Map<String, Object>> cached = RENDERERS.get(engine);
    if (cached != null) {
      return cached;
    }
    if (!engine.equals("1.7") && !engine.equals("2")) {
      throw new IllegalArgumentException(
          "\"engine\" must be \"1.7\" or \"2\", not \"" + engine + "\"");
    }
    String classpath = System.getProperty("hookline.velocity.classpath." + engine);
    if (classpath == null || classpath.isEmpty()) {
      throw new IllegalStateException(
          "no classpath for engine " + engine + " (run through the script build.sh prints)");
    }
    List<URL> urls = new ArrayList<>();
    for (String entry : classpath.split(File.pathSeparator)) {
      urls.add(new File(entry).toURI().toURL());
    }
    // Parent: this loader (Jackson and the JDK); Velocity and Renderer come only from urls.
    ClassLoader loader = new URLClassLoader(urls.toArray(new URL[0]), Main.class.getClassLoader());
    Class<?> type = Class.forName("hookline.velocity.Renderer", true, loader);
    Function<Map<String, Object>, Map<String, Object>> renderer =
        (Function<Map<String, Object>, Map<String, Object>>) type.getConstructor().newInstance();
    RENDERERS.put(engine, renderer);
    return renderer;
  }

  /** The exception and its causes on one line, as Velocity wraps a method's failure. */
  private static String describe(Throwable e) {
    StringBuilder out = new StringBuilder(e.toString());
    for (Throwable cause = e.getCause(); cause != null && cause != e; cause = cause.getCause()) {
      out.append(" <- ").append(cause);
      if (cause.getCause() == cause) {
        break;
      }
    }
    return out.toString();
  }
}
