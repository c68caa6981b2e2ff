package hookline.velocity;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * API Gateway's $input, as its mapping template reference documents it. The JSON body is read
 * with Jackson, so objects are LinkedHashMaps and arrays Lists: "$input.path('$.o')" renders
 * "{a=b}" as on AWS.
 */
public final class Input {
  private static final ObjectMapper JSON = new ObjectMapper();
  /** A JSONPath that selects nothing (a JSON null is selected, and is null). */
  private static final Object MISSING = new Object();

  private final String body;
  private final Map<String, String> path;
  private final Map<String, String> query;
  private final Map<String, String> header;
  private final Map<String, Object> params = new LinkedHashMap<>();
  private Object parsed;
  private boolean isParsed;

  Input(String body, Map<String, String> path, Map<String, String> query, Map<String, String> header) {
    this.body = body;
    this.path = path;
    this.query = query;
    this.header = header;
    params.put("path", path);
    params.put("querystring", query);
    params.put("header", header);
  }

  /** $input.body: the raw payload. */
  public String getBody() {
    return body;
  }

  /** $input.params(): {path, querystring, header}, each a map of name to value. */
  public Map<String, Object> params() {
    return params;
  }

  /**
   * $input.params('x'): from the path, else the query string, else the headers ("searched in
   * that order"); the empty string when none has it.
   */
  public String params(String name) {
    for (Map<String, String> source : List.of(path, query, header)) {
      String value = source.get(name);
      if (value != null) {
        return value;
      }
    }
    return "";
  }

  /** $input.path('$.a.b'): the selected part of the JSON body as an object, or null. */
  public Object path(String expression) {
    Object value = select(expression);
    return value == MISSING ? null : value;
  }

  /**
   * $input.json('$.a.b'): the selected part as JSON text. What AWS renders for a path that
   * selects nothing is not documented; here it is the empty string.
   */
  public String json(String expression) {
    Object value = select(expression);
    if (value == MISSING) {
      return "";
    }
    try {
      return JSON.writeValueAsString(value);
    } catch (JsonProcessingException e) {
      throw new IllegalStateException("writing JSON: " + e.getMessage(), e);
    }
  }

  private Object select(String expression) {
    if (!isParsed) {
      try {
        // What AWS does with a body that is not JSON is not documented: fail loudly.
        parsed = JSON.readValue(body, Object.class);
      } catch (JsonProcessingException e) {
        throw new IllegalArgumentException(
            "$input.path/$input.json on a body that is not JSON: " + e.getOriginalMessage(), e);
      }
      isParsed = true;
    }
    return JsonPath.select(parsed, expression, MISSING);
  }
}
